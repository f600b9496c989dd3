-- Beyond JIM's lifecycle: rotation that keeps the key's id (the replaced secret's prefix and
-- argon2id hash, accepted until the grace period ends), address allowlists and per-key limits.

-- AlterTable
ALTER TABLE "api_keys" ADD COLUMN     "allowed_cidrs" TEXT[],
ADD COLUMN     "previous_hash" TEXT,
ADD COLUMN     "previous_key_expires_at" TIMESTAMPTZ(3),
ADD COLUMN     "previous_key_prefix" TEXT,
ADD COLUMN     "rate_limit_max" INTEGER,
ADD COLUMN     "rate_limit_window_seconds" INTEGER;

-- CreateIndex
CREATE INDEX "api_keys_previous_key_prefix_idx" ON "api_keys"("previous_key_prefix");

-- No CHECK constraint for the pair (both or neither, each at least 1): the wasm schema engine
-- panics describing one (npm run db:migration:create). keyward writes both or neither, and reads
-- any other combination as "the server default".

-- Direct-SQL changes to the new fields (and to metadata) are changes too: the row version moves, so caches re-read.
CREATE OR REPLACE FUNCTION keyward_bump_key_version() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF coalesce(current_setting('keyward.versioned', true), '') <> 'on'
     AND NEW.version = OLD.version
     AND (NEW.name, NEW.description, NEW.key_prefix, NEW.hash, NEW.is_enabled, NEW.is_infrastructure_key, NEW.expires_at,
          NEW.previous_key_prefix, NEW.previous_hash, NEW.previous_key_expires_at, NEW.allowed_cidrs, NEW.rate_limit_max, NEW.rate_limit_window_seconds, NEW.metadata)
         IS DISTINCT FROM
         (OLD.name, OLD.description, OLD.key_prefix, OLD.hash, OLD.is_enabled, OLD.is_infrastructure_key, OLD.expires_at,
          OLD.previous_key_prefix, OLD.previous_hash, OLD.previous_key_expires_at, OLD.allowed_cidrs, OLD.rate_limit_max, OLD.rate_limit_window_seconds, OLD.metadata)
  THEN
    NEW.version := OLD.version + 1;
  END IF;
  RETURN NEW;
END
$fn$;
