// Webhook signing secrets: generated as Standard Webhooks' whsec_ (24 random bytes, base64), kept
// encrypted at rest with AES-256-GCM under WEBHOOK_SECRET_KEY. The ciphertext is bound to its
// subscription (associated data), so a row copied onto another subscription does not decrypt.
import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';

export const SECRET_PREFIX = 'whsec_';

export const generateSigningSecret = () => `${SECRET_PREFIX}${randomBytes(24).toString('base64')}`;

export interface SecretBox {
  seal(secret: string, webhookId: string): string;
  /** Throws when the text was sealed under another server key or altered. */
  open(sealed: string, webhookId: string): string;
}

export function createSecretBox(key: Buffer): SecretBox {
  // Names the server key (not secret: a hash of it), so a row sealed under an earlier key is told apart.
  const keyId = createHash('sha256').update(key).digest('base64url').slice(0, 8);
  return {
    seal(secret, webhookId) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(webhookId));
      const body = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
      return ['v1', keyId, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join(':');
    },
    open(sealed, webhookId) {
      const [version, sealedKeyId, iv, tag, body] = sealed.split(':');
      if (version !== 'v1' || !body) throw new Error('not a sealed webhook secret');
      if (sealedKeyId !== keyId) throw new Error(`sealed under another WEBHOOK_SECRET_KEY (${sealedKeyId}, this server's is ${keyId})`);
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: 16 });
      decipher.setAAD(Buffer.from(webhookId));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
    },
  };
}

/** Standard Webhooks' signature header: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`, one per secret, space-separated. */
export function signatureHeader(secrets: string[], id: string, timestampSeconds: number, body: string): string {
  const signed = `${id}.${timestampSeconds}.${body}`;
  return secrets
    .map((s) => {
      const key = Buffer.from(s.startsWith(SECRET_PREFIX) ? s.slice(SECRET_PREFIX.length) : s, 'base64');
      return `v1,${createHmac('sha256', key).update(signed).digest('base64')}`;
    })
    .join(' ');
}
