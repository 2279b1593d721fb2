import { useEffect, useId, useRef, useState, type KeyboardEvent, type PointerEvent } from "react";
import { usePictureUrl } from "../api";
import { holdModal } from "../logic/modal";
import { FIT, STEP, panBy, zoomAt, zoomTitle, type View } from "../logic/zoom";

/**
 * A picture at full size in a modal dialog: zoom with the wheel, a pinch, the buttons or +/- keys;
 * pan by dragging or with the arrow keys; 0 fits it again; Escape closes. The picture toggles
 * (boxed image, heatmap, attention) stay available inside. Its title says which picture of which image is
 * shown (it follows the toggles) and names the dialog: what a sighted user reads is what is read out.
 */
export function ZoomViewer({
  name,
  kinds,
  links,
  label,
  initial,
  onClose,
}: {
  name: string;
  kinds: readonly string[];
  links: Record<string, string>;
  label: (kind: string) => string;
  initial: string;
  onClose: () => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const viewport = useRef<HTMLDivElement>(null);
  const [kind, setKind] = useState(initial);
  const [view, setView] = useState<View>(FIT);
  const pointers = useRef(new Map<number, { x: number; y: number }>());
  const { url, error } = usePictureUrl(links[kind] ?? null);

  // The parent's onClose may be a new function on each of its renders (the threshold tuner's is): the
  // latest is kept here, so the dialog is shown and focused once, when the viewer mounts. Held anew on
  // each, a render between Escape and the dialog's close event (the slider moved with the keyboard)
  // opened it again (logic/modal.ts), and one while it was open (the service status, every 15 s) took the
  // keyboard from the button it was on.
  const closeHandler = useRef(onClose);
  useEffect(() => {
    closeHandler.current = onClose;
  }, [onClose]);
  useEffect(() => {
    const el = dialog.current;
    if (!el) return;
    const release = holdModal(el, () => closeHandler.current());
    viewport.current?.focus();
    return release;
  }, []);

  const centre = (): [number, number] => {
    const rect = viewport.current?.getBoundingClientRect();
    return rect ? [rect.width / 2, rect.height / 2] : [0, 0];
  };
  const local = (clientX: number, clientY: number): [number, number] => {
    const rect = viewport.current?.getBoundingClientRect();
    return rect ? [clientX - rect.left, clientY - rect.top] : [0, 0];
  };
  const zoom = (factor: number, at?: [number, number]) => setView((v) => zoomAt(v, factor, ...(at ?? centre())));

  // The wheel zooms instead of scrolling the page behind the dialog. React attaches wheel handlers as
  // passive listeners, where preventDefault is ignored (Chrome logs an intervention to the console),
  // so this one is a native listener registered as not passive.
  useEffect(() => {
    const el = viewport.current;
    if (!el) return;
    const onWheel = (event: WheelEvent) => {
      event.preventDefault();
      const rect = el.getBoundingClientRect();
      setView((v) => zoomAt(v, event.deltaY < 0 ? STEP : 1 / STEP, event.clientX - rect.left, event.clientY - rect.top));
    };
    el.addEventListener("wheel", onWheel, { passive: false });
    return () => el.removeEventListener("wheel", onWheel);
  }, []);
  const onKey = (event: KeyboardEvent) => {
    const moves: Record<string, [number, number]> = { ArrowLeft: [40, 0], ArrowRight: [-40, 0], ArrowUp: [0, 40], ArrowDown: [0, -40] };
    if (event.key === "+" || event.key === "=") zoom(STEP);
    else if (event.key === "-") zoom(1 / STEP);
    else if (event.key === "0") setView(FIT);
    else if (moves[event.key]) setView((v) => panBy(v, ...(moves[event.key] as [number, number])));
    else return;
    event.preventDefault();
  };
  const onPointerDown = (event: PointerEvent) => {
    (event.target as Element).setPointerCapture?.(event.pointerId);
    pointers.current.set(event.pointerId, { x: event.clientX, y: event.clientY });
  };
  const onPointerMove = (event: PointerEvent) => {
    const previous = pointers.current.get(event.pointerId);
    if (!previous) return;
    const others = [...pointers.current.entries()].filter(([id]) => id !== event.pointerId).map(([, p]) => p);
    if (others.length === 1) {
      // Pinch: the change in finger distance zooms around the midpoint.
      const other = others[0]!;
      const before = Math.hypot(previous.x - other.x, previous.y - other.y);
      const after = Math.hypot(event.clientX - other.x, event.clientY - other.y);
      if (before > 0) zoom(after / before, local((event.clientX + other.x) / 2, (event.clientY + other.y) / 2));
    } else {
      setView((v) => panBy(v, event.clientX - previous.x, event.clientY - previous.y));
    }
    pointers.current.set(event.pointerId, { x: event.clientX, y: event.clientY });
  };
  const onPointerUp = (event: PointerEvent) => pointers.current.delete(event.pointerId);

  return (
    <dialog ref={dialog} className="zoom-dialog" aria-labelledby={titleId}>
      <h2 id={titleId} className="zoom-title" data-testid="zoom-title">
        {zoomTitle(label(kind), name)}
      </h2>
      <div className="zoom-toolbar">
        <div className="toggle-group" role="group" aria-label="Picture">
          {kinds.map((k) => (
            <button key={k} type="button" className="toggle" aria-pressed={k === kind} onClick={() => setKind(k)}>
              {label(k)}
            </button>
          ))}
        </div>
        <div className="zoom-buttons" role="group" aria-label="Zoom">
          <button type="button" className="button secondary" onClick={() => zoom(1 / STEP)} aria-label="Zoom out">
            −
          </button>
          <span className="zoom-level" data-testid="zoom-level" aria-live="polite">
            {Math.round(view.scale * 100)}%
          </span>
          <button type="button" className="button secondary" onClick={() => zoom(STEP)} aria-label="Zoom in">
            +
          </button>
          <button type="button" className="button secondary" onClick={() => setView(FIT)}>
            Fit
          </button>
          <button type="button" className="button secondary" onClick={() => dialog.current?.close()}>
            Close
          </button>
        </div>
      </div>
      <div
        ref={viewport}
        className="zoom-viewport"
        tabIndex={0}
        role="group"
        aria-label="Picture: wheel, pinch or +/- to zoom, drag or arrow keys to pan, 0 to fit"
        onKeyDown={onKey}
        onPointerDown={onPointerDown}
        onPointerMove={onPointerMove}
        onPointerUp={onPointerUp}
        onPointerCancel={onPointerUp}
      >
        {url ? (
          <img
            src={url}
            alt={`${label(kind)} of ${name}`}
            draggable={false}
            style={{ transform: `translate(${view.x}px, ${view.y}px) scale(${view.scale})` }}
          />
        ) : error ? (
          <p className="picture-missing">
            {error.title}: {error.message}
          </p>
        ) : (
          <div className="picture-loading" aria-hidden="true" />
        )}
      </div>
      <p className="muted small zoom-help">Wheel, pinch or + / − to zoom; drag or arrow keys to pan; 0 fits; Escape closes.</p>
    </dialog>
  );
}
