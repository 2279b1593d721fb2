import type { InspectionRecord } from "@eagle-iad/client";
import { useCallback, useId, useRef, useState } from "react";
import { useApi, useCategoryList } from "../api";
import { bandLine, cautionLine, categoryDomain, formatScore, scoreLine } from "../logic/scale";
import { boxesCutBelow, boxesCutLine, legendOf, verdictMapFactor } from "../logic/legend";
import { categoryVersionRoute } from "../logic/route";
import { modelVersionText } from "../logic/versions";
import { answeredByView, decisionView, formatStrength, orderPictures, pictureLabel, regionsHeading, regionsOf, regionStrength, type Region } from "../logic/verdict";
import { MapLegend } from "./MapLegend";
import { Picture } from "./Picture";
import { ReferencePicture } from "./ReferencePicture";
import { ScoreScale } from "./ScoreScale";
import { ZoomViewer } from "./ZoomViewer";

export function DecisionBadge({ decision, size = "big" }: { decision: string | null; size?: "big" | "small" }) {
  const view = decisionView(decision);
  return (
    <span className={`decision decision-${view.tone} decision-${size}`} data-testid={size === "big" ? "verdict" : undefined}>
      <span aria-hidden="true" className="decision-symbol">
        {view.symbol}
      </span>
      {view.label}
    </span>
  );
}

function Flag({ on, label, detail }: { on: boolean; label: string; detail: string }) {
  return (
    <span className={`flag ${on ? "flag-on" : "flag-off"}`} title={detail}>
      {label}: <strong>{on ? "yes" : "no"}</strong>
    </span>
  );
}

/** One inspection: the verdict first, then score against threshold in words, the scale, and the pictures. */
export function InspectionView({ record, headingLevel = 3 }: { record: InspectionRecord; headingLevel?: 2 | 3 }) {
  const kinds = orderPictures(Object.keys(record.pictures).filter((kind) => kind !== "reference")); // shown beside, not a toggle
  const [shown, setShown] = useState<string | null>(kinds[0] ?? null);
  const [showCandidates, setShowCandidates] = useState(false);
  const [zoomed, setZoomed] = useState(false);
  const opener = useRef<HTMLButtonElement>(null);
  const closeZoom = useCallback(() => {
    setZoomed(false);
    opener.current?.focus();
  }, []);
  const candidatesId = useId();
  const categories = useCategoryList();
  const { figures } = useApi();
  const link = shown ? record.pictures[shown] : undefined;
  const verdict = record.verdict;
  const expertDecision = typeof verdict["expert_decision"] === "string" ? verdict["expert_decision"] : null;
  const reply = typeof verdict["reply"] === "string" ? verdict["reply"] : null;
  const mllm = record.answer !== null || reply !== null;
  const regions = regionsOf(verdict);
  const answeredBy = answeredByView(record.answered_by);
  const category = categories?.find((c) => c.name === record.category);
  const domain = categoryDomain(
    category?.tau ?? record.tau,
    category?.s_max ?? record.s_max,
    category?.training_scores?.min ?? null,
    category?.training_scores?.max ?? null,
    figures.farAboveSMax, // a far-off tau (1e9) is marked off the scale, not let squash it
  );
  const band = bandLine(record.score, record.tau, record.s_max, mllm);
  const caution = cautionLine(record.near_threshold, record.score, record.tau);
  const legend = legendOf(verdict, record.tau, category);
  const factor = verdictMapFactor(verdict, record.tau);
  // boxes cut below the threshold (weak evidence): said beside the boxes and marked on the legend, as in the PNG
  const cut = boxesCutBelow(verdict, record.tau);
  const cutLine = boxesCutLine(verdict, record.tau);
  const label = (kind: string) => (kind === "box" && regions.boxes.length === 0 ? "Image" : pictureLabel(kind));
  const Heading = headingLevel === 2 ? "h2" : "h3";
  return (
    <article className="inspection" aria-label={`Inspection of ${record.image_name}`}>
      <header className="inspection-head">
        <DecisionBadge decision={record.decision} />
        <div className="inspection-name">
          <Heading className="inspection-title">{record.image_name}</Heading>
          <p className="muted small">
            {record.category} · {new Date(record.time).toLocaleString()}
          </p>
        </div>
      </header>
      <div className="inspection-body">
        <div className="inspection-facts">
          <p className="score-line" data-testid="score-line">
            {scoreLine(record.score, record.tau)}
          </p>
          {record.unrecognised ? (
            <p className="caution-line" data-testid="unrecognised-line">
              Not recognised: this image is not like the training images of “{record.category}” (another product, a
              blocked or dirty camera, a bad exposure, or a defect over much of the part?). It does not pass, but no
              boxes are drawn: look at the picture itself.
            </p>
          ) : null}
          {(record.warnings ?? []).map((warning) => (
            <p className="caution-line" data-testid="warning-line" key={warning}>
              {warning}
            </p>
          ))}
          {caution ? (
            <p className="caution-line" data-testid="caution-line">
              {caution}
            </p>
          ) : null}
          {band ? (
            <p className="band-line small" data-testid="band-line">
              {band}
            </p>
          ) : null}
          <ScoreScale score={record.score} tau={record.tau} sMax={record.s_max} domain={domain} />
          <dl className="facts">
            <div>
              <dt>Model</dt>
              <dd data-testid="model-version">
                {typeof record.model_version === "number" ? (
                  // The category page at this version in its Versions timeline (what made it, its threshold).
                  <a href={categoryVersionRoute(record.category, record.model_version)} title={`This version among the versions of ${record.category}`}>
                    {modelVersionText(record.model_version)}
                  </a>
                ) : (
                  <span className="muted">{modelVersionText(record.model_version)}</span>
                )}
              </dd>
            </div>
            {expertDecision ? (
              <div>
                <dt>Expert alone</dt>
                <dd>{expertDecision}</dd>
              </div>
            ) : null}
            {record.decision && !["anomalous", "normal"].includes(record.decision) ? (
              <div>
                <dt>Raw decision</dt>
                <dd>{record.decision}</dd>
              </div>
            ) : null}
          </dl>
          <p className="flags">
            <Flag on={record.in_band} label="In unsure band" detail="threshold <= score < band end" />
            <Flag on={record.caas_applied} label="CAAS applied" detail="the MLLM's attention to the image was sharpened" />
          </p>
          {mllm ? (
            <section className="mllm" aria-label="MLLM reply">
              <h4>MLLM</h4>
              <p>
                Answer: <strong data-testid="answer">{record.answer ?? "–"}</strong>
              </p>
              {answeredBy ? (
                <>
                  <p className="small" data-testid="answered-by">
                    Answered by <code className="backend-name">{answeredBy.backend}</code> ({answeredBy.how})
                  </p>
                  <p className="small" data-testid="caas-status">
                    {answeredBy.caas}
                  </p>
                </>
              ) : null}
              {reply !== null ? (
                <blockquote className="reply" data-testid="reply" tabIndex={0}>
                  {reply || <em>(empty reply)</em>}
                </blockquote>
              ) : null}
            </section>
          ) : (
            <p className="muted small">Expert verdict only (the service has no MLLM).</p>
          )}
        </div>
        <div className="inspection-pictures">
          {kinds.length > 0 ? (
            <>
              <div className="toggle-group" role="group" aria-label="Picture">
                {kinds.map((kind) => (
                  <button key={kind} type="button" className="toggle" aria-pressed={shown === kind} onClick={() => setShown(kind)}>
                    {label(kind)}
                  </button>
                ))}
              </div>
              <div className="picture-pair">
                <div>{link && shown ? <Picture key={link} link={link} alt={`${label(shown)} of ${record.image_name}`} /> : null}</div>
                <ReferencePicture record={record} exported={category?.export ?? null} />
              </div>
              {link && shown ? (
                <button type="button" className="link-button zoom-open" ref={opener} onClick={() => setZoomed(true)}>
                  View full size (zoom)
                </button>
              ) : null}
              {zoomed && shown ? (
                <ZoomViewer name={record.image_name} kinds={kinds} links={record.pictures} label={label} initial={shown} onClose={closeZoom} />
              ) : null}
              {shown === "heatmap" && legend ? <MapLegend legend={legend} category={record.category} cut={cut} /> : null}
              <p className="small" data-testid="regions">
                {regions.boxes.length > 0
                  ? regionsHeading(regions.boxes, factor)
                  : record.score !== null && record.tau !== null && record.score >= record.tau
                    ? "No region stood out enough to box."
                    : record.unrecognised
                      ? "No boxes: the image is not like the training images."
                      : "No boxes: the expert's score is below the threshold."}
                {regions.boxes.length === 0 && regions.candidates.length > 0 ? (
                  <>
                    {" "}
                    <button type="button" className="link-button" aria-expanded={showCandidates} aria-controls={candidatesId}
                      onClick={() => setShowCandidates((v) => !v)}>
                      {showCandidates ? "Hide" : "Show"} {regions.candidates.length} weaker region{regions.candidates.length === 1 ? "" : "s"}
                    </button>
                  </>
                ) : null}
              </p>
              {cutLine ? (
                <p className="small" data-testid="boxes-cut-line">
                  {cutLine}
                </p>
              ) : null}
              {regions.boxes.length > 0 ? <RegionList regions={regions.boxes} tau={record.tau} factor={factor} testId="box-list" /> : null}
              {showCandidates ? (
                <RegionList regions={regions.candidates} tau={record.tau} factor={factor} testId="candidate-list" id={candidatesId} />
              ) : null}
            </>
          ) : (
            <p className="muted">No pictures.</p>
          )}
        </div>
      </div>
    </article>
  );
}

/** Each region's strength on the score's scale, against the threshold, and where it is. */
function RegionList({ regions, tau, factor, testId, id }: { regions: Region[]; tau: number | null; factor: number; testId: string; id?: string }) {
  return (
    <ol className="regions small" id={id} data-testid={testId}>
      {regions.map((box, i) => {
        const strength = regionStrength(box, factor);
        const side = strength === null || tau === null ? "" : strength >= tau ? " (at or above the threshold)" : " (below the threshold)";
        return (
          <li key={i}>
            #{box.rank ?? i + 1}: strength {formatStrength(strength)}
            {side}, at x {box.x0}–{box.x1}, y {box.y0}–{box.y1}
          </li>
        );
      })}
    </ol>
  );
}
