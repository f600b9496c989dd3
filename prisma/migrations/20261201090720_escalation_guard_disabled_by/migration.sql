-- The escalation guard's containment (README "Roles"): while a key is disabled, the effective
-- permissions of whoever disabled it; only a caller holding them may enable it again. Empty
-- while enabled. Keys already disabled have no record of who did it: the service treats an
-- empty list on a disabled key as "*" (only an Administrator may enable them).
-- AlterTable
ALTER TABLE "api_keys" ADD COLUMN     "disabled_by" TEXT[] DEFAULT ARRAY[]::TEXT[];
