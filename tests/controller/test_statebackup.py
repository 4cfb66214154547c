"""ConfigMapStateBackup against the real kube-apiserver: round trips (small and 1,000,000 rows), writes
limited to changed buckets, crash safety of the index-last write order, corruption detection, cleanup."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import config

from httpsync.controller import statebackup as sb
from httpsync.controller.kube import KubeApi
from httpsync.controller.statebackup import ConfigMapStateBackup, StateCorruptError, bucket_of

Row = tuple[str, str, str]
MiB = 1 << 20
SMALL = 16_384  # the smallest shard_bytes: ~9 KiB of compressed rows per shard, so a few thousand rows spread


@pytest.fixture
async def api(kube: Any) -> AsyncIterator[KubeApi]:
    client = await config.new_client_from_config(config_file=kube.kubeconfig)
    api = KubeApi(client)
    yield api
    await api.aclose()


def backup(api: KubeApi, ns: str, name: str = "items", **kw: Any) -> ConfigMapStateBackup:
    return ConfigMapStateBackup(api, ns, name, f"uid-{name}-{ns}", **kw)


def digest(h: int) -> str:
    return hashlib.blake2b(h.to_bytes(8, "little"), digest_size=16).hexdigest()


def make_rows(n: int, salt: int = 0) -> list[Row]:
    return [("service", f"item-{i:06d}", digest(i + salt)) for i in range(n)]


async def load_all(b: ConfigMapStateBackup) -> list[Row]:
    return [row async for row in b.load()]


def state_cms(kube: Any, ns: str, name: str = "items") -> dict[str, dict[str, Any]]:
    items = kube.get_json("configmaps", "-n", ns, "-l", f"httpsync.io/state-of={name}")["items"]
    return {cm["metadata"]["name"]: cm for cm in items}


def versions(cms: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: cm["metadata"]["resourceVersion"] for name, cm in cms.items()}


def index_of(cms: dict[str, dict[str, Any]], name: str = "items") -> dict[str, Any]:
    return json.loads(cms[f"httpsync-state-{name}"]["data"]["index"])


def test_bucket_of_is_stable_and_escapes_the_separator() -> None:
    assert bucket_of("service", "item-000001", 1024) == zlib.crc32(b"service\titem-000001") % 1024
    assert bucket_of("a\tb", "c", 1 << 30) != bucket_of("a", "b\tc", 1 << 30)  # escaped, so not the same key


@pytest.mark.cluster
async def test_small_round_trip_survives_a_new_instance_and_carries_labels_and_owner(kube: Any, api: KubeApi) -> None:
    ns = kube.new_namespace("sb")
    rows = [
        ("service", "tab\there", "h1"),
        ("service", "line\nbreak\\and\\tbackslash\r", "h2"),
        ("équipe", "ünïcødé-名前-🚀", "h3"),
    ]
    report = await backup(api, ns).save(rows)
    assert (report.rows, report.buckets, report.shards_total, report.shards_written) == (3, 1, 1, 1)

    fresh = backup(api, ns)  # as after an operator restart
    assert sorted(await load_all(fresh)) == sorted(rows)
    assert await fresh.buckets() == 1 and await fresh.exists()

    cms = state_cms(kube, ns)
    assert set(cms) == {"httpsync-state-items", "httpsync-state-items-0-0-g1"}
    for cm in cms.values():
        assert cm["metadata"]["labels"]["httpsync.io/state-of"] == "items"
        assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "httpsync"
        (owner,) = cm["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "httpsync.io/v1alpha1",
            "kind": "HttpEndpointMapping",
            "name": "items",
            "uid": f"uid-items-{ns}",
        }
    lines = zlib.decompress(base64.b64decode(cms["httpsync-state-items-0-0-g1"]["binaryData"]["rows"])).split(b"\n")
    assert lines[-1] == b"" and lines[:-1] == sorted(lines[:-1]) and all(line.count(b"\t") == 2 for line in lines[:-1])
    assert index_of(cms)["rows"] == 3


@pytest.mark.cluster
async def test_nothing_saved_loads_nothing(kube: Any, api: KubeApi) -> None:
    b = backup(api, kube.new_namespace("sb"))
    assert await load_all(b) == [] and await b.buckets() == 1 and not await b.exists()
    report = await b.save([])
    assert (report.rows, report.shards_total) == (0, 0)
    assert await load_all(b) == [] and await b.exists()


@pytest.mark.cluster
async def test_million_rows_round_trip(kube: Any, api: KubeApi) -> None:
    ns = kube.new_namespace("sb")
    n = 1_000_000
    expected = {"count": 0, "sum": 0}

    async def rows() -> AsyncIterator[Row]:  # lazily, as from the SQLite working copy
        for i in range(n):
            row = ("service", f"item-{i:07d}", digest(i))
            expected["count"] += 1
            expected["sum"] += zlib.crc32("\t".join(row).encode())
            yield row

    b = backup(api, ns)
    t0 = time.perf_counter()
    report = await b.save(rows())
    t1 = time.perf_counter()
    count = total = 0
    async for row in backup(api, ns).load():
        count += 1
        total += zlib.crc32("\t".join(row).encode())
    t2 = time.perf_counter()
    assert (count, total) == (expected["count"], expected["sum"]) == (n, expected["sum"])
    assert report.rows == n and report.shards_total >= report.buckets > 1

    cms = state_cms(kube, ns)
    assert len(cms) == report.shards_total + 1
    sizes = [len(json.dumps(cm)) for cm in cms.values()]
    assert max(sizes) < MiB
    print(
        f"\n1M rows: save {t1 - t0:.1f}s, load {t2 - t1:.1f}s, {len(cms)} ConfigMaps, "
        f"{sum(sizes) / MiB:.1f} MiB as JSON, largest {max(sizes) / 1024:.0f} KiB, N={report.buckets}"
    )

    again = await b.save(rows())  # unchanged: no shard and not the index is written
    assert (again.shards_written, again.shards_deleted, again.generation) == (0, 0, report.generation)
    assert versions(state_cms(kube, ns)) == versions(cms)


@pytest.mark.cluster
async def test_changed_buckets_rewrites_only_their_shards(kube: Any, api: KubeApi) -> None:
    ns = kube.new_namespace("sb")
    b = backup(api, ns, shard_bytes=SMALL)
    rows = make_rows(3000)
    first = await b.save(rows)
    assert first.buckets >= 8
    before = state_cms(kube, ns)
    n = await b.buckets()
    assert n == first.buckets

    changed = dict(enumerate(rows))
    changed[7] = (rows[7][0], rows[7][1], "new-hash")  # one hash changes
    del changed[11]  # one entity vanishes
    dirty = {bucket_of(*rows[7][:2], n), bucket_of(*rows[11][:2], n)}
    report = await b.save(changed.values(), changed_buckets=dirty)

    after = state_cms(kube, ns)
    old_index, new_index = index_of(before), index_of(after)
    for bucket, (old, new) in enumerate(zip(old_index["bucketState"], new_index["bucketState"], strict=True)):
        if bucket in dirty:
            assert {s["name"] for s in old["shards"]}.isdisjoint(s["name"] for s in new["shards"])
        else:
            assert old == new
            for s in new["shards"]:  # not written again
                assert (
                    after[s["name"]]["metadata"]["resourceVersion"] == before[s["name"]]["metadata"]["resourceVersion"]
                )
    untouched = set(before) & set(after) - {"httpsync-state-items"}
    assert len(untouched) == len(before) - 1 - len(dirty)
    assert report.shards_written == len(dirty) and report.shards_deleted == len(dirty)
    assert sorted(await load_all(b)) == sorted(changed.values())

    # a bucket the caller forgot, whose row count changed, is rewritten all the same
    extra = ("service", "late-arrival", "h")
    report = await b.save([*changed.values(), extra], changed_buckets=set())
    assert report.shards_written == 1 and extra in await load_all(b)

    # a full save with nothing changed writes nothing
    rv = versions(state_cms(kube, ns))
    report = await b.save([*changed.values(), extra])
    assert report.shards_written == 0 and versions(state_cms(kube, ns)) == rv


@pytest.mark.cluster
async def test_buckets_grow_when_a_bucket_overflows_and_shrink_on_a_full_save(kube: Any, api: KubeApi) -> None:
    ns = kube.new_namespace("sb")
    b = backup(api, ns, shard_bytes=SMALL)
    assert (await b.save(make_rows(100))).buckets == 1
    one = bucket_of("service", "item-000000", 1)
    grown = await b.save(make_rows(4000), changed_buckets={one})
    assert grown.resized_from == 1 and grown.buckets >= 8 and grown.shards_total >= grown.buckets
    assert sorted(await load_all(b)) == make_rows(4000)
    assert max(len(json.dumps(cm)) for cm in state_cms(kube, ns).values()) < SMALL
    shrunk = await b.save(make_rows(10))
    assert shrunk.resized_from == grown.buckets and shrunk.buckets == 1
    assert len(state_cms(kube, ns)) == 2 and sorted(await load_all(b)) == make_rows(10)


@pytest.mark.cluster
async def test_a_bucket_spans_several_shards_once_buckets_are_at_their_maximum(
    kube: Any, api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sb, "MAX_BUCKETS", 2)
    ns = kube.new_namespace("sb")
    b = backup(api, ns, shard_bytes=SMALL)
    report = await b.save(make_rows(3000))
    assert report.buckets == 2 and report.shards_total > 2
    cms = state_cms(kube, ns)
    assert any(name.endswith("-1-g1") for name in cms)  # part 1 of some bucket
    assert max(len(json.dumps(cm)) for cm in cms.values()) < SMALL
    assert sorted(await load_all(b)) == make_rows(3000)


@pytest.mark.cluster
async def test_crash_before_the_index_write_leaves_the_old_state_loadable(
    kube: Any, api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = kube.new_namespace("sb")
    old_rows, new_rows = make_rows(2000), make_rows(2500, salt=7)
    await backup(api, ns, shard_bytes=SMALL).save(old_rows)
    referenced = set(state_cms(kube, ns))

    async def crash(self: ConfigMapStateBackup, index: dict[str, Any], old: Any) -> None:
        raise RuntimeError("operator killed")

    with monkeypatch.context() as m:
        m.setattr(ConfigMapStateBackup, "_write_index", crash)
        with pytest.raises(RuntimeError, match="killed"):
            await backup(api, ns, shard_bytes=SMALL).save(new_rows)
    leftovers = set(state_cms(kube, ns)) - referenced
    assert leftovers  # the new shards were written, the index was not
    assert sorted(await load_all(backup(api, ns, shard_bytes=SMALL))) == old_rows

    report = await backup(api, ns, shard_bytes=SMALL).save(new_rows)  # the next save cleans up
    cms = state_cms(kube, ns)
    index = index_of(cms)
    assert set(cms) == {"httpsync-state-items"} | {s["name"] for e in index["bucketState"] for s in e["shards"]}
    assert report.shards_deleted == len(referenced) - 1
    assert sorted(await load_all(backup(api, ns))) == new_rows


@pytest.mark.cluster
async def test_corrupt_or_missing_shards_and_index_raise_state_corrupt(kube: Any, api: KubeApi) -> None:
    ns = kube.new_namespace("sb")
    b = backup(api, ns, shard_bytes=SMALL)
    rows = make_rows(2000)
    await b.save(rows)
    shards = sorted(set(state_cms(kube, ns)) - {"httpsync-state-items"})

    async def expect_corrupt(fragment: str) -> None:
        with pytest.raises(StateCorruptError) as info:
            await load_all(b)
        message = str(info.value)
        assert info.value.reason == "StateCorrupt" and fragment in message
        assert "resyncs in full, deleting nothing" in message
        assert f"kubectl delete configmap -n {ns} -l httpsync.io/state-of=items" in message

    other = base64.b64encode(zlib.compress(b"service\tx\th\n")).decode()
    kube.kubectl(
        "patch", "configmap", "-n", ns, shards[0], "--type=merge", "-p", json.dumps({"binaryData": {"rows": other}})
    )
    await expect_corrupt(f"ConfigMap {shards[0]} does not match the checksum")
    kube.kubectl("delete", "configmap", "-n", ns, shards[1])
    await expect_corrupt("")  # the first problem met: either shard
    repaired = await b.save(rows)  # a save rewrites what was deleted or edited, though the rows are the same
    assert repaired.shards_written == 2 and sorted(await load_all(b)) == rows

    second = index_of(state_cms(kube, ns))["bucketState"][1]["shards"][0]["name"]
    kube.kubectl("delete", "configmap", "-n", ns, second)
    early = b.load()  # stops after a row of bucket 0, while bucket 1 fails to be fetched ahead
    await anext(early)
    await early.aclose()
    await expect_corrupt(f"ConfigMap {second}, listed in its index, does not exist")

    kube.kubectl("patch", "configmap", "-n", ns, "httpsync-state-items", "--type=merge", "-p", '{"data":{"index":"{"}}')
    await expect_corrupt("does not hold a version-1 index")
    await b.save(rows)
    assert sorted(await load_all(b)) == rows

    recreated = ConfigMapStateBackup(api, ns, "items", "another-uid")  # mapping deleted and created again
    with pytest.raises(StateCorruptError, match="earlier HttpEndpointMapping of the same name"):
        await load_all(recreated)
    await recreated.save(rows)  # rewritten in full under the new owner
    assert sorted(await load_all(recreated)) == rows
    owners = {cm["metadata"]["ownerReferences"][0]["uid"] for cm in state_cms(kube, ns).values()}
    assert owners == {"another-uid"}


@pytest.mark.cluster
async def test_delete_all_removes_only_this_mappings_state(kube: Any, api: KubeApi) -> None:
    ns = kube.new_namespace("sb")
    await backup(api, ns, shard_bytes=SMALL).save(make_rows(2000))
    await backup(api, ns, "other").save(make_rows(5))
    count = len(state_cms(kube, ns))
    assert count > 2
    assert await backup(api, ns).delete_all() == count
    assert state_cms(kube, ns) == {} and await load_all(backup(api, ns)) == []
    assert len(state_cms(kube, ns, "other")) == 2 and len(await load_all(backup(api, ns, "other"))) == 5
    assert await backup(api, ns).delete_all() == 0


@pytest.mark.cluster
async def test_long_mapping_names_give_valid_names_and_labels(kube: Any, api: KubeApi) -> None:
    ns = kube.new_namespace("sb")
    name = "a" * 120 + "." + "b" * 132  # 253 characters, the longest object name
    b = ConfigMapStateBackup(api, ns, name, str(uuid.uuid4()))
    await b.save(make_rows(10))
    assert len(b.index_name) <= 253 and len(b.label) <= 63
    assert sorted(await load_all(b)) == make_rows(10)
    assert await b.delete_all() == 2
