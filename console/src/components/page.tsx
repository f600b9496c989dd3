// A page's heading takes the focus when the page opens, so keyboard and screen-reader users
// start at its top after every navigation (as they would on a full page load).
import { useEffect, useRef, type ReactNode } from 'react';

export function Page({ title, children, actions }: { title: string; children: ReactNode; actions?: ReactNode }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · keyward console`;
    ref.current?.focus();
  }, [title]);
  return (
    <>
      <div className="page-head">
        <h1 ref={ref} tabIndex={-1}>
          {title}
        </h1>
        {actions ? <div className="page-actions">{actions}</div> : null}
      </div>
      {children}
    </>
  );
}
