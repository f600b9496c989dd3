// A secret the server shows once (a new key, a rotated key, a webhook's signing secret): shown
// with a copy button and said plainly to be unrecoverable. It lives in this component's props
// only: never stored, never put in a URL.
import { useState } from 'react';

export function SecretOnce({ label, secret }: { label: string; secret: string }) {
  const [copied, setCopied] = useState<'yes' | 'no' | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied('yes');
    } catch {
      setCopied('no');
    }
  };
  return (
    <section className="secret" aria-labelledby="secret-title">
      <h2 id="secret-title">{label}</h2>
      <p className="warning">
        <strong>Copy it now: you will not see this again.</strong> The server keeps only a hash of it; if it is lost, rotate the key.
      </p>
      <div className="secret-row">
        <label htmlFor="secret-value">Secret</label>
        <input id="secret-value" data-testid="secret" readOnly value={secret} className="mono" onFocus={(e) => e.currentTarget.select()} />
        <button type="button" onClick={copy}>
          Copy
        </button>
      </div>
      <p role="status" className="muted">
        {copied === 'yes' ? 'Copied to the clipboard.' : copied === 'no' ? 'The browser refused the clipboard: select the field and copy it by hand.' : ''}
      </p>
    </section>
  );
}
