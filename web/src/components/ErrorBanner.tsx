import type { UserError } from "../logic/errors";

/** A specific, visible error: what happened, the service's words, and a retry button where it helps. */
export function ErrorBanner({ error, onRetry, compact = false }: { error: UserError; onRetry?: () => void; compact?: boolean }) {
  return (
    <div className={`error-banner${compact ? " compact" : ""}`} role="alert" data-kind={error.kind}>
      <span className="error-icon" aria-hidden="true">!</span>
      <div className="error-text">
        <strong>{error.title}</strong>
        <span>{error.message}</span>
      </div>
      {onRetry && error.retryable ? (
        <button type="button" className="button secondary" onClick={onRetry}>
          Retry
        </button>
      ) : null}
    </div>
  );
}

export function Loading({ label = "Loading…" }: { label?: string }) {
  return (
    <p className="loading" role="status">
      <span className="spinner" aria-hidden="true" /> {label}
    </p>
  );
}
