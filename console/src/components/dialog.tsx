// A modal dialog on the native <dialog>: showModal() makes the rest of the page inert and moves
// focus inside, Escape closes it (the "cancel" event), and on close focus goes back to whatever
// opened it, so a keyboard user never loses their place.
import { useEffect, useRef, type ReactNode } from 'react';

export function Dialog(props: { title: string; open: boolean; onClose: () => void; children: ReactNode; describedBy?: string }) {
  const ref = useRef<HTMLDialogElement>(null);
  const opener = useRef<HTMLElement | null>(null);
  const titleId = `dialog-${props.title.replace(/\W+/g, '-').toLowerCase()}`;

  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (props.open && !dialog.open) {
      opener.current = document.activeElement as HTMLElement | null;
      dialog.showModal();
      // The first field (or button) rather than the close button: what the user came to do.
      const first = dialog.querySelector<HTMLElement>('input, select, textarea, button:not(.dialog-close)');
      first?.focus();
    } else if (!props.open && dialog.open) {
      dialog.close();
    }
  }, [props.open]);

  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    const onClose = () => {
      const back = opener.current;
      opener.current = null;
      if (back && document.contains(back)) back.focus();
      props.onClose();
    };
    dialog.addEventListener('close', onClose);
    return () => dialog.removeEventListener('close', onClose);
  });

  return (
    <dialog ref={ref} aria-labelledby={titleId} aria-describedby={props.describedBy} className="dialog">
      <div className="dialog-head">
        <h2 id={titleId}>{props.title}</h2>
        <button type="button" className="dialog-close secondary" onClick={() => ref.current?.close()}>
          Close<span className="visually-hidden"> dialog</span>
        </button>
      </div>
      {props.open ? props.children : null}
    </dialog>
  );
}
