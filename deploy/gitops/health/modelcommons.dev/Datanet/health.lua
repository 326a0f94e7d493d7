-- Argo CD health check for modelcommons.dev/v1alpha1 Datanet.
-- Source of truth; deploy/gitops/health/argocd-cm.yaml is generated from it by
-- hack/gitops-health (cd hack/gitops-health && go run . --write), which also tests it.
--
-- Reads the kstatus-style status the operator writes: status.observedGeneration and the
-- Ready, Reconciling and Stalled conditions. Uses only Lua's base library: Argo CD runs
-- argocd-cm health scripts without the string and math libraries unless
-- resource.customizations.useOpenLibs.<group_kind> is "true".
local hs = {}

local function findCondition(status, conditionType)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

-- "reason: message", or whichever of the two is set.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status

if type(status) ~= "table" or status.observedGeneration == nil
    or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. generation
  else
    hs.message = "Waiting for the operator"
  end
  return hs
end

local ready = findCondition(status, "Ready")
local reconciling = findCondition(status, "Reconciling")
local stalled = findCondition(status, "Stalled")

if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  if hs.message == "" then
    hs.message = describe(ready)
  end
  return hs
end

hs.status = "Progressing"
if isTrue(reconciling) and describe(reconciling) ~= "" then
  hs.message = describe(reconciling)
elseif ready ~= nil and describe(ready) ~= "" then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the operator"
end
return hs
