-- CreateTable
CREATE TABLE "roles" (
    "id" INTEGER NOT NULL,
    "name" TEXT NOT NULL,
    "built_in" BOOLEAN NOT NULL DEFAULT false,
    "permissions" TEXT[],

    CONSTRAINT "roles_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "key_prefix" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "is_enabled" BOOLEAN NOT NULL DEFAULT true,
    "is_infrastructure_key" BOOLEAN NOT NULL DEFAULT false,
    "expires_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_used_at" TIMESTAMPTZ(3),
    "last_used_from_ip" TEXT,
    "version" INTEGER NOT NULL DEFAULT 1,

    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_key_roles" (
    "api_key_id" UUID NOT NULL,
    "role_id" INTEGER NOT NULL,

    CONSTRAINT "api_key_roles_pkey" PRIMARY KEY ("api_key_id","role_id")
);

-- CreateIndex
CREATE UNIQUE INDEX "roles_name_key" ON "roles"("name");

-- CreateIndex
CREATE INDEX "api_keys_key_prefix_idx" ON "api_keys"("key_prefix");

-- CreateIndex
CREATE INDEX "api_key_roles_role_id_idx" ON "api_key_roles"("role_id");

-- AddForeignKey
ALTER TABLE "api_key_roles" ADD CONSTRAINT "api_key_roles_api_key_id_fkey" FOREIGN KEY ("api_key_id") REFERENCES "api_keys"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "api_key_roles" ADD CONSTRAINT "api_key_roles_role_id_fkey" FOREIGN KEY ("role_id") REFERENCES "roles"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Seed the built-in roles with fixed ids. The Administrator permission "*" covers permissions added later.
INSERT INTO "roles" ("id", "name", "built_in", "permissions") VALUES
  (1, 'Administrator', true, ARRAY['*']),
  (2, 'Operator', true, ARRAY['apikeys.read', 'apikeys.write', 'roles.read']),
  (3, 'Reader', true, ARRAY['apikeys.read', 'roles.read']);
