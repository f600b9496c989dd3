-- metrics.read: GET /metrics on the API port. Held by Administrator (through "*") and by a new
-- built-in role, Monitoring, which holds nothing else: the key a Prometheus server scrapes with.
INSERT INTO "roles" ("id", "name", "built_in", "permissions")
VALUES (4, 'Monitoring', true, ARRAY['metrics.read'])
ON CONFLICT ("id") DO NOTHING;
