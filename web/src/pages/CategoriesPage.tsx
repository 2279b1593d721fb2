import { FIT_OPTIONS, type Category, type FitOptions, type FitSource, type Job, type JobEvent } from "@eagle-iad/client";
import { useEffect, useId, useRef, useState, type FormEvent } from "react";
import { useApi, useAsync } from "../api";
import { ErrorBanner, Loading } from "../components/ErrorBanner";
import { RetireCategory } from "../components/RetireCategory";
import { RoleGate } from "../components/RoleGate";
import { CategoryDashboard } from "../components/CategoryDashboard";
import { SelectField } from "../components/SelectField";
import { ThresholdTuner } from "../components/ThresholdTuner";
import { useLandOn } from "../components/useLandOn";
import { VersionTimeline } from "../components/VersionTimeline";
import { describeError, isUnauthorised, type UserError } from "../logic/errors";
import { exportFormatName, needsFittedModelLine } from "../logic/exported";
import { exposureLine } from "../logic/exposure";
import { formatRoute, type VersionTarget } from "../logic/route";
import { formatScore } from "../logic/scale";
import { versionLanding } from "../logic/versions";

function formatDate(value: string | null | undefined): string {
  if (!value) return "–";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? value : date.toLocaleString();
}

/** `version`: the model version a link points at (`#/categories/<name>?version=3`), shown in the Versions timeline. */
export function CategoriesPage({ selected, version = { kind: "none" } }: { selected: string | null; version?: VersionTarget }) {
  const { client } = useApi();
  const list = useAsync((signal) => client.categories(signal), [client]);
  // Said where the retired category's detail was (the list), and the keyboard lands on it.
  const [retired, setRetired] = useState<string | null>(null);
  const retiredNote = useRef<HTMLParagraphElement>(null);
  useEffect(() => {
    if (retired !== null) retiredNote.current?.focus();
  }, [retired]);
  const onRetired = (line: string) => {
    setRetired(line);
    list.reload();
    window.location.hash = formatRoute("categories");
  };
  return (
    <section aria-labelledby="categories-title">
      <div className="page-head">
        <h1 id="categories-title">Categories</h1>
        <p className="lede">Fitted experts: one PatchCore memory bank per product, with its threshold (set from normal images alone) and the end of its unsure band.</p>
      </div>
      {list.error ? <ErrorBanner error={list.error} onRetry={list.reload} /> : null}
      {list.loading && !list.data ? <Loading label="Loading categories…" /> : null}
      {retired !== null && !selected ? (
        <p className="notice" role="status" tabIndex={-1} ref={retiredNote} data-testid="retired-note">
          {retired}
        </p>
      ) : null}
      {list.data ? <CategoryTable categories={list.data} selected={selected} /> : null}
      {selected ? (
        <CategoryDetail key={selected} name={selected} version={version} onChanged={list.reload} onRetired={onRetired} />
      ) : null}
      <RoleGate needed="engineer" what="Fitting a category">
        <FitForm onFitted={list.reload} />
      </RoleGate>
    </section>
  );
}

function CategoryTable({ categories, selected }: { categories: Category[]; selected: string | null }) {
  if (categories.length === 0) return <p className="notice">No category is fitted yet: use the form below.</p>;
  return (
    <div className="table-wrap panel flush">
      <table className="data-table" aria-label="Fitted categories">
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col" className="wide-only">Backbone</th>
            <th scope="col" className="num">Threshold</th>
            <th scope="col" className="num">Band end</th>
            <th scope="col" className="wide-only">Rule</th>
            <th scope="col" className="num wide-only">Train images</th>
            <th scope="col" className="wide-only">Created</th>
          </tr>
        </thead>
        <tbody>
          {categories.map((c) => (
            <tr key={c.name} aria-current={c.name === selected ? "true" : undefined} className={c.name === selected ? "selected" : undefined}>
              <th scope="row">
                <a href={formatRoute("categories", c.name)}>{c.name}</a>
              </th>
              {c.error ? (
                <td colSpan={6} className="error-cell">
                  unreadable: {c.error}
                </td>
              ) : (
                <>
                  <td className="wide-only">{c.backbone ?? "–"}</td>
                  <td className="num">{formatScore(c.tau)}</td>
                  <td className="num">{formatScore(c.s_max)}</td>
                  <td className="wide-only">
                    {c.rule ?? "–"}
                    {c.rule_params && Object.keys(c.rule_params).length > 0 ? (
                      <span className="muted small">
                        {" "}
                        ({Object.entries(c.rule_params)
                          .map(([k, v]) => `${k}=${v}`)
                          .join(", ")})
                      </span>
                    ) : null}
                  </td>
                  <td className="num wide-only">{c.train_images ?? "–"}</td>
                  <td className="wide-only">{formatDate(c.created)}</td>
                </>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function CategoryDetail({ name, version, onChanged, onRetired }: { name: string; version: VersionTarget; onChanged: () => void; onRetired: (line: string) => void }) {
  const { client } = useApi();
  const detail = useAsync((signal) => client.category(name, signal), [client, name]);
  const evidence = useAsync((signal) => client.categoryEvidence(name, signal), [client, name]);
  // The highest inspection score "Over time" charts: the tuner's "flags nothing" names it beside the other scores.
  const [inspectedHighest, setInspectedHighest] = useState<number | null>(null);
  const c = detail.data;
  const scores = c?.training_scores;
  // The versions are shown for a readable model, and for one that cannot be read (a rollback recovers it);
  // kept through the reload a rollback starts, so what the rollback said is not lost with the list.
  const readable = Boolean(c && !c.error);
  const unreadable = detail.error?.kind === "model_invalid";
  const [hadVersions, setHadVersions] = useState(false);
  useEffect(() => {
    if (!detail.loading) setHadVersions(readable || unreadable);
  }, [detail.loading, readable, unreadable]);
  // An export (eagle serve --runtime onnx|openvino) has no versions: said in place of the timeline, not fetched
  // for a 409 needs_fitted_model banner.
  const exportedLine = needsFittedModelLine(c?.export, "Rolling back, teaching or listing the versions");
  const showVersions = !exportedLine && (readable || unreadable || (detail.loading && hadVersions));
  // A link to one version of an export: said in the note, which is scrolled to (an export has no timeline).
  const exportLanding = c?.export ? versionLanding(version, name, { versions: [] }, c.export) : null;
  const exportNote = useRef<HTMLParagraphElement>(null);
  useLandOn(exportLanding?.kind === "note" ? `export:${exportLanding.text}` : null, () => exportNote.current);
  return (
    <section className="panel detail" aria-labelledby="category-detail-title">
      <div className="detail-head">
        <h2 id="category-detail-title">{name}</h2>
        <a className="button secondary" href={formatRoute("categories")}>
          Close
        </a>
      </div>
      {detail.error ? <ErrorBanner error={detail.error} onRetry={detail.reload} /> : null}
      {detail.loading && !c ? <Loading /> : null}
      {c && !c.error && c.warnings?.length ? (
        // What the fit, or the last teach or threshold change, found degenerate about the model although it works.
        <ul className="model-warnings" aria-label="Model warnings" data-testid="model-warnings">
          {c.warnings.map((warning) => (
            <li key={warning} className="warning">
              <span aria-hidden="true">⚠ </span>
              {warning}
            </li>
          ))}
        </ul>
      ) : null}
      {c && !c.error ? (
        <div className="detail-grid">
          <ThresholdTuner category={c} evidence={evidence.data} inspectedHighest={inspectedHighest} onChanged={() => (detail.reload(), evidence.reload(), onChanged())} />
          <dl className="facts vertical">
            {c.export ? (
              <div>
                <dt>Runs as</dt>
                <dd data-testid="runs-as">{exportFormatName(c.export)} export</dd>
              </div>
            ) : null}
            <div>
              <dt>Backbone</dt>
              <dd>{c.backbone ?? "–"}</dd>
            </div>
            <div>
              <dt>Threshold (<span className="greek">τ</span>)</dt>
              <dd>{formatScore(c.tau)}</dd>
            </div>
            <div>
              <dt>Unsure band end (s_max)</dt>
              <dd>{formatScore(c.s_max)}</dd>
            </div>
            <div>
              <dt>Rule</dt>
              <dd>{c.rule ?? "–"}</dd>
            </div>
            <div>
              <dt>Training images</dt>
              <dd>{c.train_images ?? "–"}</dd>
            </div>
            <div>
              <dt>Memory bank</dt>
              <dd>{c.bank_size == null ? "–" : `${c.bank_size} patches`}</dd>
            </div>
            <div>
              <dt>Training exposure</dt>
              <dd data-testid="training-exposure">{exposureLine(c.training_exposure)}</dd>
            </div>
            {scores ? (
              <div>
                <dt>Scores</dt>
                <dd>
                  n={scores.count}, mean {formatScore(scores.mean)} ± {formatScore(scores.std)}, range {formatScore(scores.min)}–
                  {formatScore(scores.max)}
                </dd>
              </div>
            ) : null}
            <div>
              <dt>Created</dt>
              <dd>{formatDate(c.created)}</dd>
            </div>
          </dl>
        </div>
      ) : null}
      {evidence.error && !detail.error ? <ErrorBanner error={evidence.error} onRetry={evidence.reload} compact /> : null /* one banner for one cause */}
      {c && !c.error ? <CategoryDashboard name={name} tau={c.tau ?? null} onHighest={setInspectedHighest} /> : null}
      {exportedLine ? (
        <section className="versions" aria-labelledby="category-export-title" data-testid="export-note">
          <h3 id="category-export-title">Versions</h3>
          {exportLanding?.kind === "note" ? (
            // A link to one version: what became of it, then why, in one notice (the keyboard lands on it).
            <p className="notice" data-testid="version-link-note" tabIndex={-1} ref={exportNote}>
              {exportLanding.text} {exportedLine}
            </p>
          ) : (
            <p className="notice">{exportedLine}</p>
          )}
        </section>
      ) : null}
      {showVersions ? (
        // Also for a model that cannot be read: rolling back to one of its versions is how it is recovered.
        <VersionTimeline
          name={name}
          target={version}
          changed={c?.history?.length ?? detail.error?.message ?? 0}
          onChanged={() => (detail.reload(), evidence.reload(), onChanged())}
        />
      ) : null}
      {c?.error ? <ErrorBanner error={{ kind: "server", title: "Model unreadable", message: c.error, retryable: false }} /> : null}
      {c || unreadable ? <RetireCategory name={name} onRetired={onRetired} /> : null}
    </section>
  );
}

/** Below this many normal images the threshold rests on too few scores to be trusted (docs/METHOD.md). */
const FEW_IMAGES = 20;

function fewImagesText(n: number): string {
  return `Only ${n} normal image${n === 1 ? "" : "s"}: a threshold from fewer than ${FEW_IMAGES} is unreliable (expect false alarms or misses). Add more normal images if you can.`;
}

// The form's choices and defaults come from the service's one table of fit options (generated into the client).
const BACKBONES: readonly string[] = FIT_OPTIONS.backbone.enum;
const RULES: readonly string[] = FIT_OPTIONS.rule.enum;

interface Progress {
  state: string;
  stage: string | null;
  done: number | null;
  total: number | null;
}

function FitForm({ onFitted }: { onFitted: () => void }) {
  const { client, requireKey } = useApi();
  const id = useId();
  const [name, setName] = useState("");
  const [source, setSource] = useState<"files" | "folder">("files");
  const [folder, setFolder] = useState("");
  const [files, setFiles] = useState<File[]>([]);
  const [backbone, setBackbone] = useState("");
  const [rule, setRule] = useState("");
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<Progress | null>(null);
  const [error, setError] = useState<UserError | null>(null);
  const [finished, setFinished] = useState<Job | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  const nameValid = /^[A-Za-z0-9_.-]+$/.test(name) && !name.includes("..");
  const ready = nameValid && (source === "folder" ? folder.trim() !== "" : files.length > 0) && !busy;
  // Why the button is disabled, in words (a greyed-out button alone leaves the user guessing).
  const blocked = busy
    ? "A fit is running; wait for it to finish."
    : name === ""
      ? "Enter a name for the category."
      : !nameValid
        ? "The name may only use letters, digits, “_”, “.” and “-”."
        : source === "folder" && folder.trim() === ""
          ? "Enter a folder under the service's data root."
          : source === "files" && files.length === 0
            ? "Choose normal images (or one zip) to fit on."
            : null;
  const imageCount = files.filter((f) => !/\.zip$/i.test(f.name)).length;
  const fewUploaded = source === "files" && imageCount > 0 && imageCount === files.length && imageCount < FEW_IMAGES;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!ready) return;
    setBusy(true);
    setError(null);
    setFinished(null);
    setProgress({ state: "starting", stage: null, done: null, total: null });
    const fitSource: FitSource =
      source === "folder" ? { folder: folder.trim() } : { files: files.map((file) => ({ name: file.name, data: file })) };
    const options: FitOptions = {};
    if (backbone) options.backbone = backbone as NonNullable<FitOptions["backbone"]>;
    if (rule) options.rule = rule as NonNullable<FitOptions["rule"]>;
    try {
      const job = await client.fit(name, fitSource, options, {
        onEvent: (e: JobEvent) =>
          setProgress((prev) => {
            const base = prev ?? { state: "queued", stage: null, done: null, total: null };
            if (e.event === "state") return { ...base, state: e.state ?? base.state };
            if (e.event === "progress") return { state: "running", stage: e.stage, done: e.done, total: e.total };
            return base;
          }),
      });
      setFinished(job);
      setProgress((prev) => (prev ? { ...prev, state: "succeeded" } : prev));
      onFitted();
    } catch (reason) {
      if (isUnauthorised(reason)) requireKey(reason);
      setError(describeError(reason));
      setProgress((prev) => (prev ? { ...prev, state: "failed" } : prev));
    } finally {
      setBusy(false);
    }
  };

  const pct = progress?.done != null && progress.total ? Math.round((progress.done / progress.total) * 100) : null;

  return (
    <section className="panel fit" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Fit a new category</h2>
      <p className="muted small">Normal images only. Fitting an existing name replaces that model when the job succeeds.</p>
      <form onSubmit={submit} className="fit-form" aria-describedby={`${id}-title`}>
        <div className="field">
          <label htmlFor={`${id}-name`}>Name</label>
          <input
            id={`${id}-name`}
            value={name}
            onChange={(e) => setName(e.target.value)}
            placeholder="e.g. tire-line-2"
            aria-invalid={name !== "" && !nameValid}
            aria-describedby={`${id}-name-hint`}
            autoComplete="off"
            required
          />
          <span id={`${id}-name-hint`} className={`hint${name !== "" && !nameValid ? " invalid" : ""}`}>
            Letters, digits, “_”, “.” and “-”.
          </span>
        </div>
        <fieldset className="field">
          <legend>Normal images from</legend>
          <div className="radio-row">
            <label>
              <input type="radio" name={`${id}-source`} checked={source === "files"} onChange={() => setSource("files")} /> Upload (images or one zip)
            </label>
            <label>
              <input type="radio" name={`${id}-source`} checked={source === "folder"} onChange={() => setSource("folder")} /> Server folder
            </label>
          </div>
        </fieldset>
        {/* Keyed: the two are different inputs (a file picker, uncontrolled; a text field, controlled), not one */}
        {source === "files" ? (
          <div className="field" key="files">
            <label htmlFor={`${id}-files`}>Files</label>
            <input
              ref={fileInput}
              id={`${id}-files`}
              type="file"
              multiple
              accept="image/*,.zip,application/zip"
              onChange={(e) => setFiles(Array.from(e.target.files ?? []))}
            />
            <span className="hint">{files.length > 0 ? `${files.length} file${files.length === 1 ? "" : "s"} chosen` : "No files chosen"}</span>
          </div>
        ) : (
          <div className="field" key="folder">
            <label htmlFor={`${id}-folder`}>Folder under the service's data root</label>
            <input id={`${id}-folder`} value={folder} onChange={(e) => setFolder(e.target.value)} placeholder="e.g. tire-good" autoComplete="off" />
          </div>
        )}
        <div className="field-row">
          <SelectField id={`${id}-backbone`} label="Backbone" value={backbone} options={BACKBONES}
            empty={`default (${FIT_OPTIONS.backbone.default})`} onChange={setBackbone} />
          <SelectField id={`${id}-rule`} label="Threshold rule" value={rule} options={RULES}
            empty={`default (${FIT_OPTIONS.rule.default})`} onChange={setRule} />
        </div>
        {fewUploaded ? (
          <p className="warning" data-testid="few-images-before">
            <span aria-hidden="true">⚠ </span>
            {fewImagesText(imageCount)}
          </p>
        ) : null}
        <div className="actions">
          <button type="submit" className="button primary" disabled={!ready} aria-describedby={blocked ? `${id}-blocked` : undefined}>
            {busy ? "Fitting…" : "Fit category"}
          </button>
          {blocked ? (
            <span id={`${id}-blocked`} className="hint" data-testid="fit-blocked">
              {blocked}
            </span>
          ) : null}
        </div>
      </form>
      {progress ? (
        <div className="fit-progress" data-testid="fit-progress" data-state={progress.state}>
          <p role="status">
            Job: <strong>{progress.state}</strong>
            {progress.stage ? (
              <>
                {" "}
                · stage <strong>{progress.stage}</strong>
                {progress.done != null && progress.total != null ? ` ${progress.done}/${progress.total}` : ""}
              </>
            ) : null}
          </p>
          <div
            className="progressbar"
            role="progressbar"
            aria-label={progress.stage ? `Fit progress: ${progress.stage}` : "Fit progress"}
            aria-valuemin={0}
            aria-valuemax={progress.total ?? 100}
            aria-valuenow={progress.done ?? (progress.state === "succeeded" ? progress.total ?? 100 : 0)}
            aria-valuetext={pct !== null ? `${pct}%` : progress.state}
          >
            <div className="progressbar-fill" style={{ width: `${progress.state === "succeeded" ? 100 : pct ?? 0}%` }} />
          </div>
        </div>
      ) : null}
      {finished ? (
        <p className="success" role="status">
          <span aria-hidden="true">✓ </span>Fitted <a href={formatRoute("categories", finished.category)}>{finished.category}</a> on {finished.images} images.
        </p>
      ) : null}
      {finished && typeof finished.images === "number" && finished.images < FEW_IMAGES ? (
        <p className="warning" data-testid="few-images">
          <span aria-hidden="true">⚠ </span>
          {fewImagesText(finished.images)}
        </p>
      ) : null}
      {error ? <ErrorBanner error={error} /> : null}
    </section>
  );
}
