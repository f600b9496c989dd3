-- CreateTable
CREATE TABLE "security_events" (
    "id" BIGSERIAL NOT NULL,
    "window_start" TIMESTAMPTZ(3) NOT NULL,
    "key_prefix" TEXT NOT NULL,
    "ip" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "count" INTEGER NOT NULL,
    "first_seen_at" TIMESTAMPTZ(3) NOT NULL,
    "last_seen_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "security_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "security_events_last_seen_at_idx" ON "security_events"("last_seen_at");

-- CreateIndex
CREATE UNIQUE INDEX "security_events_window_start_key_prefix_ip_reason_key" ON "security_events"("window_start", "key_prefix", "ip", "reason");
