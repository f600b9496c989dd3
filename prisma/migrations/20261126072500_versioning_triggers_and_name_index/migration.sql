-- Row versions drive ETags and the verified-key cache. keyward bumps them itself and says so with
-- SET LOCAL keyward.versioned = on. Any other change (direct SQL) gets its bump from these
-- triggers, so a cache revalidation (which compares versions) notices it.
-- Usage tracking (last_used_at, last_used_from_ip) and rehashing do not count as changes.

CREATE FUNCTION keyward_bump_key_version() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF coalesce(current_setting('keyward.versioned', true), '') <> 'on'
     AND NEW.version = OLD.version
     AND (NEW.name, NEW.description, NEW.key_prefix, NEW.is_enabled, NEW.is_infrastructure_key, NEW.expires_at)
         IS DISTINCT FROM
         (OLD.name, OLD.description, OLD.key_prefix, OLD.is_enabled, OLD.is_infrastructure_key, OLD.expires_at)
  THEN
    NEW.version := OLD.version + 1;
  END IF;
  RETURN NEW;
END
$fn$;

CREATE TRIGGER api_keys_bump_version BEFORE UPDATE ON "api_keys"
  FOR EACH ROW EXECUTE FUNCTION keyward_bump_key_version();

CREATE FUNCTION keyward_bump_version_for_roles() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF coalesce(current_setting('keyward.versioned', true), '') <> 'on' THEN
    IF TG_TABLE_NAME = 'roles' THEN
      UPDATE "api_keys" SET version = version + 1
        WHERE id IN (SELECT api_key_id FROM "api_key_roles" WHERE role_id = NEW.id);
    ELSIF TG_OP = 'DELETE' THEN
      UPDATE "api_keys" SET version = version + 1 WHERE id = OLD.api_key_id;
    ELSE
      UPDATE "api_keys" SET version = version + 1 WHERE id = NEW.api_key_id;
    END IF;
  END IF;
  RETURN NULL;
END
$fn$;

CREATE TRIGGER api_key_roles_bump_version AFTER INSERT OR UPDATE OR DELETE ON "api_key_roles"
  FOR EACH ROW EXECUTE FUNCTION keyward_bump_version_for_roles();

CREATE TRIGGER roles_bump_version AFTER UPDATE OF permissions ON "roles"
  FOR EACH ROW EXECUTE FUNCTION keyward_bump_version_for_roles();

-- Listing orders by lower(name) in code-point order and filters with LIKE on the same
-- expression: one index serves both (prefix patterns become a range scan).
CREATE INDEX "api_keys_lower_name_id_idx" ON "api_keys" ((lower("name") COLLATE "C"), "id");
