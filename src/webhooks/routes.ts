// /webhooks: subscriptions (webhooks.read, webhooks.write), their test ping and delivery log.
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses } from '../lib/problem.js';
import { authorize, SECURITY } from '../plugins/auth.js';
import { collectionPath, noStore } from '../routes/api-keys.js';
import { nextLink } from '../services/paging.js';
import { KEY_EVENT_TYPES } from './events.js';
import {
  createWebhookBody,
  deliveriesQuery,
  deliverySchema,
  patchWebhookBody,
  replaceWebhookBody,
  rotateSecretBody,
  webhookIdParams,
  webhookSchema,
  webhookWithSecretSchema,
} from './schemas.js';

const TAGS = ['webhooks'];
const NOT_FOUND: [number, string] = [404, 'No subscription with this id (WEBHOOK_NOT_FOUND)'];
const OFF: [number, string] = [503, 'Webhooks are off: the server has no WEBHOOK_SECRET_KEY (WEBHOOKS_NOT_CONFIGURED); or the database is unavailable'];
const SIGNING =
  'Events are POSTed as JSON (`{type, timestamp, data}`) and signed as Standard Webhooks specifies (`webhook-id`, `webhook-timestamp`, `webhook-signature`), so any Standard Webhooks library verifies them with the subscription\'s `whsec_` secret; the document\'s `webhooks` section describes each event.';

export const webhookRoutes: FastifyPluginAsyncZod = async (app) => {
  const hooks = () => app.services.webhooks;

  app.get(
    '/webhooks',
    {
      onRequest: authorize('webhooks.read'),
      schema: {
        tags: TAGS,
        operationId: 'listWebhooks',
        summary: 'List webhook subscriptions',
        description: `Every subscription, oldest first (never a secret). ${SIGNING}`,
        security: SECURITY,
        response: { 200: z.array(webhookSchema).describe('Every subscription'), ...problemResponses(401, 403, OFF) },
      },
    },
    async (_req, reply) => {
      noStore(reply);
      return hooks().list();
    },
  );

  app.post(
    '/webhooks',
    {
      onRequest: authorize('webhooks.write'),
      schema: {
        tags: TAGS,
        operationId: 'createWebhook',
        summary: 'Create a webhook subscription',
        description: `A URL and the events it receives (${KEY_EVENT_TYPES.join(', ')}). The reply carries the signing secret (\`whsec_…\`) — the only time it is shown. The URL must be https (unless WEBHOOK_ALLOW_HTTP) and may not name or resolve to a loopback, private, link-local or metadata address (unless WEBHOOK_ALLOWED_NETWORKS allows it); every attempt checks again after DNS. ${SIGNING}`,
        security: SECURITY,
        body: createWebhookBody,
        response: { 201: webhookWithSecretSchema.describe('Created; Location names it. The secret is not shown again'), ...problemResponses(400, 401, 403, OFF) },
      },
    },
    async (req, reply) => {
      const { webhook, secret } = await hooks().create(req.body);
      noStore(reply);
      reply.header('location', `${collectionPath(req)}/${webhook.id}`);
      return reply.code(201).send({ ...webhook, secret });
    },
  );

  app.get(
    '/webhooks/:id',
    {
      onRequest: authorize('webhooks.read'),
      schema: {
        tags: TAGS,
        operationId: 'getWebhook',
        summary: 'Get one webhook subscription',
        description: 'The subscription; its secret is never shown again (rotate it to get a new one).',
        security: SECURITY,
        params: webhookIdParams,
        response: { 200: webhookSchema.describe('The subscription'), ...problemResponses(400, 401, 403, NOT_FOUND, OFF) },
      },
    },
    async (req, reply) => {
      noStore(reply);
      return hooks().get(req.params.id);
    },
  );

  app.put(
    '/webhooks/:id',
    {
      onRequest: authorize('webhooks.write'),
      schema: {
        tags: TAGS,
        operationId: 'replaceWebhook',
        summary: 'Replace a webhook subscription',
        description: 'Full replacement of url, eventTypes, description and isEnabled; the secret stays. Enabling clears disabledReason and the failing streak; deliveries held while it was disabled resume.',
        security: SECURITY,
        params: webhookIdParams,
        body: replaceWebhookBody,
        response: { 200: webhookSchema.describe('The subscription after the change'), ...problemResponses(400, 401, 403, NOT_FOUND, OFF) },
      },
    },
    async (req, reply) => {
      noStore(reply);
      return hooks().replace(req.params.id, req.body);
    },
  );

  app.patch(
    '/webhooks/:id',
    {
      onRequest: authorize('webhooks.write'),
      schema: {
        tags: TAGS,
        operationId: 'updateWebhook',
        summary: 'Change some fields of a webhook subscription',
        description: 'Only the fields sent change; `{"isEnabled": false}` disables it (no new events are queued for it, and those queued wait), `{"isEnabled": true}` enables it again.',
        security: SECURITY,
        params: webhookIdParams,
        body: patchWebhookBody,
        response: { 200: webhookSchema.describe('The subscription after the change'), ...problemResponses(400, 401, 403, NOT_FOUND, OFF) },
      },
    },
    async (req, reply) => {
      noStore(reply);
      return hooks().patch(req.params.id, req.body);
    },
  );

  for (const [action, isEnabled] of [['enable', true], ['disable', false]] as const) {
    app.post(
      `/webhooks/:id/${action}`,
      {
        onRequest: authorize('webhooks.write'),
        schema: {
          tags: TAGS,
          operationId: `${action}Webhook`,
          summary: `${isEnabled ? 'Enable' : 'Disable'} a webhook subscription`,
          description: isEnabled
            ? 'As PATCH `{"isEnabled": true}`: clears disabledReason and the failing streak; held deliveries resume.'
            : 'As PATCH `{"isEnabled": false}`: no new events are queued for it; those already queued wait until it is enabled again.',
          security: SECURITY,
          params: webhookIdParams,
          response: { 200: webhookSchema.describe('The subscription after the change'), ...problemResponses(400, 401, 403, NOT_FOUND, OFF) },
        },
      },
      async (req, reply) => {
        noStore(reply);
        return hooks().setEnabled(req.params.id, isEnabled);
      },
    );
  }

  app.delete(
    '/webhooks/:id',
    {
      onRequest: authorize('webhooks.write'),
      schema: {
        tags: TAGS,
        operationId: 'deleteWebhook',
        summary: 'Delete a webhook subscription',
        description: '204. Its queued deliveries and its delivery log go with it.',
        security: SECURITY,
        params: webhookIdParams,
        response: { 204: z.null().describe('Deleted'), ...problemResponses(400, 401, 403, NOT_FOUND, OFF) },
      },
    },
    async (req, reply) => {
      await hooks().remove(req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/webhooks/:id/rotate-secret',
    {
      onRequest: authorize('webhooks.write'),
      schema: {
        tags: TAGS,
        operationId: 'rotateWebhookSecret',
        summary: 'Give a webhook subscription a new signing secret',
        description:
          'Returns the new secret, once. For `gracePeriodSeconds` (default 24 hours) every delivery carries two signatures, one per secret (Standard Webhooks allows several, space-separated): deploy the new secret to the receiver meanwhile.',
        security: SECURITY,
        params: webhookIdParams,
        body: rotateSecretBody,
        response: { 200: webhookWithSecretSchema.describe('The subscription with its new secret (not shown again)'), ...problemResponses(400, 401, 403, NOT_FOUND, OFF) },
      },
    },
    async (req, reply) => {
      const { webhook, secret } = await hooks().rotateSecret(req.params.id, req.body?.gracePeriodSeconds);
      noStore(reply);
      return { ...webhook, secret };
    },
  );

  app.post(
    '/webhooks/:id/test',
    {
      onRequest: authorize('webhooks.write'),
      schema: {
        tags: TAGS,
        operationId: 'testWebhook',
        summary: 'Send a test ping',
        description:
          'Sends a signed `ping` event to this subscription now (enabled or not) and answers when the attempt is over, with the delivery as recorded: `status` succeeded or failed, the attempt\'s status code, duration and error. A ping is not retried and says nothing of the subscription\'s health (it never disables it).',
        security: SECURITY,
        params: webhookIdParams,
        response: { 200: deliverySchema.describe('The ping\'s delivery and its one attempt'), ...problemResponses(400, 401, 403, NOT_FOUND, OFF) },
      },
    },
    async (req, reply) => {
      noStore(reply);
      return hooks().test(req.params.id);
    },
  );

  app.get(
    '/webhooks/:id/deliveries',
    {
      onRequest: authorize('webhooks.read'),
      schema: {
        tags: TAGS,
        operationId: 'listWebhookDeliveries',
        summary: 'The delivery log of a subscription',
        description:
          'Each event sent to it, newest first, with every attempt (when, how long, the status code, the error). 100 a page unless `limit` says otherwise; the next page is in the `Link` header. Kept for WEBHOOK_RETENTION_DAYS.',
        security: SECURITY,
        params: webhookIdParams,
        querystring: deliveriesQuery,
        response: { 200: z.array(deliverySchema).describe('Newest first'), ...problemResponses(400, 401, 403, NOT_FOUND, OFF) },
      },
    },
    async (req, reply) => {
      const { items, next } = await hooks().deliveries(req.params.id, req.query);
      if (next) reply.header('link', nextLink(req.url, req.query, next));
      noStore(reply);
      return items;
    },
  );
};
