// Hash routing (#/keys/ID): the page survives a reload and the server needs one index.html. The
// key never goes into the URL; only ids and page names do.
import { useEffect, useState } from 'react';

export function currentPath(): string {
  const hash = window.location.hash;
  return hash.startsWith('#/') ? hash.slice(1) : '/keys';
}

export function useRoute(): string {
  const [path, setPath] = useState(currentPath);
  useEffect(() => {
    const onChange = () => {
      // A plain fragment (#main, from the skip link) is not a route: keep the page.
      if (window.location.hash.startsWith('#/') || window.location.hash === '') setPath(currentPath());
    };
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return path;
}

export const href = (path: string) => `#${path}`;

export function navigate(path: string) {
  window.location.hash = path;
}

/** Matches "/keys/:id/history" against a path; the named parts, or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const p = pattern.split('/');
  const s = path.split('?')[0].split('/');
  if (p.length !== s.length) return null;
  const out: Record<string, string> = {};
  for (let i = 0; i < p.length; i++) {
    if (p[i].startsWith(':')) out[p[i].slice(1)] = decodeURIComponent(s[i]);
    else if (p[i] !== s[i]) return null;
  }
  return out;
}
