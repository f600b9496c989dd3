-- Direct-SQL changes the first version triggers missed: a new hash (a replaced secret), a role
-- link moved from one key to another, TRUNCATE of the role links, and a renamed role. keyward's
-- own rehash marks itself with keyward.versioned, like its other writes.

CREATE OR REPLACE FUNCTION keyward_bump_key_version() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF coalesce(current_setting('keyward.versioned', true), '') <> 'on'
     AND NEW.version = OLD.version
     AND (NEW.name, NEW.description, NEW.key_prefix, NEW.hash, NEW.is_enabled, NEW.is_infrastructure_key, NEW.expires_at)
         IS DISTINCT FROM
         (OLD.name, OLD.description, OLD.key_prefix, OLD.hash, OLD.is_enabled, OLD.is_infrastructure_key, OLD.expires_at)
  THEN
    NEW.version := OLD.version + 1;
  END IF;
  RETURN NEW;
END
$fn$;

CREATE OR REPLACE FUNCTION keyward_bump_version_for_roles() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF coalesce(current_setting('keyward.versioned', true), '') <> 'on' THEN
    IF TG_TABLE_NAME = 'roles' THEN
      UPDATE "api_keys" SET version = version + 1
        WHERE id IN (SELECT api_key_id FROM "api_key_roles" WHERE role_id IN (NEW.id, OLD.id));
    ELSIF TG_OP = 'DELETE' THEN
      UPDATE "api_keys" SET version = version + 1 WHERE id = OLD.api_key_id;
    ELSIF TG_OP = 'UPDATE' THEN
      UPDATE "api_keys" SET version = version + 1 WHERE id IN (OLD.api_key_id, NEW.api_key_id);
    ELSE
      UPDATE "api_keys" SET version = version + 1 WHERE id = NEW.api_key_id;
    END IF;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE FUNCTION keyward_bump_all_versions() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF coalesce(current_setting('keyward.versioned', true), '') <> 'on' THEN
    UPDATE "api_keys" SET version = version + 1;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER api_key_roles_truncate_bump_versions AFTER TRUNCATE ON "api_key_roles"
  FOR EACH STATEMENT EXECUTE FUNCTION keyward_bump_all_versions();

DROP TRIGGER roles_bump_version ON "roles";
CREATE TRIGGER roles_bump_version AFTER UPDATE OF permissions, name, id ON "roles"
  FOR EACH ROW EXECUTE FUNCTION keyward_bump_version_for_roles();
