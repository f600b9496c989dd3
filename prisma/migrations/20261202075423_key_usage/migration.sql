-- CreateTable
CREATE TABLE "key_usage" (
    "api_key_id" UUID NOT NULL,
    "bucket_start" TIMESTAMPTZ(3) NOT NULL,
    "granularity" TEXT NOT NULL,
    "valid" BIGINT NOT NULL DEFAULT 0,
    "disabled" BIGINT NOT NULL DEFAULT 0,
    "expired" BIGINT NOT NULL DEFAULT 0,
    "insufficient_permissions" BIGINT NOT NULL DEFAULT 0,
    "rate_limited" BIGINT NOT NULL DEFAULT 0,
    "ip_not_allowed" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "key_usage_pkey" PRIMARY KEY ("api_key_id","bucket_start","granularity")
);

-- CreateIndex
CREATE INDEX "key_usage_granularity_bucket_start_idx" ON "key_usage"("granularity", "bucket_start");

-- CreateIndex
CREATE INDEX "key_usage_bucket_start_idx" ON "key_usage"("bucket_start");

-- AddForeignKey
ALTER TABLE "key_usage" ADD CONSTRAINT "key_usage_api_key_id_fkey" FOREIGN KEY ("api_key_id") REFERENCES "api_keys"("id") ON DELETE CASCADE ON UPDATE CASCADE;
