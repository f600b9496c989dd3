-- CreateTable
CREATE TABLE "api_key_changes" (
    "id" BIGSERIAL NOT NULL,
    "api_key_id" UUID NOT NULL,
    "version" INTEGER NOT NULL,
    "operation" TEXT NOT NULL,
    "changed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor_type" TEXT NOT NULL,
    "actor_id" TEXT,
    "actor_name" TEXT,
    "change_reason" TEXT,
    "snapshot" JSONB NOT NULL,

    CONSTRAINT "api_key_changes_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "infrastructure_bootstraps" (
    "id" UUID NOT NULL,
    "key_prefix" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "api_key_id" UUID NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "infrastructure_bootstraps_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "api_key_changes_changed_at_idx" ON "api_key_changes"("changed_at");

-- CreateIndex
CREATE UNIQUE INDEX "api_key_changes_api_key_id_version_key" ON "api_key_changes"("api_key_id", "version");

-- CreateIndex
CREATE INDEX "infrastructure_bootstraps_key_prefix_idx" ON "infrastructure_bootstraps"("key_prefix");
