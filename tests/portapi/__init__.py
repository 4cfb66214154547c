"""An emulator of Port's public REST API (token, bulk and single upsert, bulk and single delete)."""
