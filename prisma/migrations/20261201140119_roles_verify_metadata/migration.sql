-- Service-to-service authentication: roles managed through the API (ids from 100 up; built-in
-- roles keep their fixed ids below 100), their change history, key metadata, and two new
-- permissions: apikeys.verify (the new built-in Verifier role, and Operator) and roles.write
-- (Administrator, through "*").

-- AlterTable
ALTER TABLE "api_keys" ADD COLUMN     "metadata" JSONB NOT NULL DEFAULT '{}';

-- AlterTable
CREATE SEQUENCE roles_id_seq;
ALTER TABLE "roles" ADD COLUMN     "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
ADD COLUMN     "description" TEXT,
ADD COLUMN     "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
ADD COLUMN     "version" INTEGER NOT NULL DEFAULT 1,
ALTER COLUMN "id" SET DEFAULT nextval('roles_id_seq');
ALTER SEQUENCE roles_id_seq OWNED BY "roles"."id";

-- CreateTable
CREATE TABLE "role_changes" (
    "id" BIGSERIAL NOT NULL,
    "role_id" INTEGER NOT NULL,
    "version" INTEGER NOT NULL,
    "operation" TEXT NOT NULL,
    "changed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor_type" TEXT NOT NULL,
    "actor_id" TEXT,
    "actor_name" TEXT,
    "change_reason" TEXT,
    "snapshot" JSONB NOT NULL,

    CONSTRAINT "role_changes_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "role_changes_role_id_version_key" ON "role_changes"("role_id", "version");

-- Roles created through the API start at 100, leaving 5-99 to future built-in roles.
SELECT setval('roles_id_seq', 100, false);

-- Role names are unique whatever their case ("Orders" and "orders" would be indistinguishable in a list).
CREATE UNIQUE INDEX "roles_lower_name_key" ON "roles" ((lower("name")));

INSERT INTO "roles" ("id", "name", "built_in", "permissions", "description")
VALUES (5, 'Verifier', true, ARRAY['apikeys.verify'], 'Verifies the keys presented to another service (POST /api/v1/apikeys/verify, its event stream)')
ON CONFLICT ("id") DO NOTHING;

-- keyward's own write (as for audit.read): the keys holding these roles keep their versions.
SELECT set_config('keyward.versioned', 'on', true);
UPDATE "roles" SET "permissions" = array_append("permissions", 'apikeys.verify')
 WHERE "id" = 2 AND NOT ('apikeys.verify' = ANY ("permissions"));
UPDATE "roles" SET "description" = CASE "id"
    WHEN 1 THEN 'Every permission, including ones added later'
    WHEN 2 THEN 'Manages keys within its own permissions; reads history and security events; verifies keys'
    WHEN 3 THEN 'Reads keys, their history and security events'
    WHEN 4 THEN 'Scrapes /metrics'
  END
 WHERE "id" BETWEEN 1 AND 4 AND "built_in";
SELECT set_config('keyward.versioned', '', true);

-- A metadata change made behind the server's back bumps the key's version too.
CREATE OR REPLACE FUNCTION keyward_bump_key_version() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF coalesce(current_setting('keyward.versioned', true), '') <> 'on'
     AND NEW.version = OLD.version
     AND (NEW.name, NEW.description, NEW.key_prefix, NEW.hash, NEW.is_enabled, NEW.is_infrastructure_key, NEW.expires_at, NEW.metadata)
         IS DISTINCT FROM
         (OLD.name, OLD.description, OLD.key_prefix, OLD.hash, OLD.is_enabled, OLD.is_infrastructure_key, OLD.expires_at, OLD.metadata)
  THEN
    NEW.version := OLD.version + 1;
  END IF;
  RETURN NEW;
END
$fn$;
