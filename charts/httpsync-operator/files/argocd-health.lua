-- Argo CD health check for httpsync.io HttpSource and HttpEndpointMapping (Lua 5.1, as Argo CD runs it).
-- Install as resource.customizations.health.httpsync.io_HttpSource and
-- resource.customizations.health.httpsync.io_HttpEndpointMapping in argocd-cm (docs/gitops.md).
--   spec.suspend                                   -> Suspended
--   status.observedGeneration ~= metadata.generation -> Progressing (the operator has not seen this spec yet)
--   Stalled=True                                   -> Degraded
--   Ready=True                                     -> Healthy
--   Ready=False                                    -> Progressing while Reconciling=True, else Degraded
--   anything else (no status, Ready=Unknown)       -> Progressing
local hs = {}

local function condition(conditions, type)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function message(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Suspended: spec.suspend is true"
  return hs
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status.conditions, "Ready")
local reconciling = condition(status.conditions, "Reconciling")
local stalled = condition(status.conditions, "Stalled")

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = message(stalled, message(ready, "Stalled"))
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message(ready, "Ready")
  return hs
end

if ready ~= nil and ready.status == "False" then
  if reconciling ~= nil and reconciling.status == "True" then
    hs.status = "Progressing"
    hs.message = message(reconciling, message(ready, "Reconciling"))
  else
    hs.status = "Degraded"
    hs.message = message(ready, "Not ready")
  end
  return hs
end

hs.status = "Progressing"
hs.message = message(reconciling, message(ready, "Waiting for the first sync"))
return hs
