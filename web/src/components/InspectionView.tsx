import type { InspectionRecord } from "@eagle-iad/client";
import { useState } from "react";
import { formatScore } from "../logic/scale";
import { decisionView, orderPictures, pictureLabel } from "../logic/verdict";
import { Picture } from "./Picture";
import { ScoreScale } from "./ScoreScale";

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

/** One inspection: verdict, score scale, flags, the MLLM's reply and the pictures. */
export function InspectionView({ record, headingLevel = 3 }: { record: InspectionRecord; headingLevel?: 2 | 3 }) {
  const kinds = orderPictures(Object.keys(record.pictures));
  const [shown, setShown] = useState<string | null>(kinds[0] ?? null);
  const link = shown ? record.pictures[shown] : undefined;
  const verdict = record.verdict;
  const expertDecision = typeof verdict["expert_decision"] === "string" ? verdict["expert_decision"] : null;
  const reply = typeof verdict["reply"] === "string" ? verdict["reply"] : null;
  const Heading = headingLevel === 2 ? "h2" : "h3";
  return (
    <article className="inspection" aria-label={`Inspection of ${record.image_name}`}>
      <header className="inspection-head">
        <div>
          <Heading className="inspection-title">{record.image_name}</Heading>
          <p className="muted small">
            {record.category} · {new Date(record.time).toLocaleString()}
          </p>
        </div>
        <DecisionBadge decision={record.decision} />
      </header>
      <div className="inspection-body">
        <div className="inspection-facts">
          <ScoreScale score={record.score} tau={record.tau} sMax={record.s_max} />
          <dl className="facts">
            <div>
              <dt>Score</dt>
              <dd>{formatScore(record.score)}</dd>
            </div>
            <div>
              <dt><span className="greek">τ</span> / s_max</dt>
              <dd>
                {formatScore(record.tau)} / {formatScore(record.s_max)}
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
            <Flag on={record.in_band} label="In low-confidence band" detail="tau <= score < s_max" />
            <Flag on={record.caas_applied} label="CAAS applied" detail="the MLLM's attention to the image was sharpened" />
          </p>
          {record.answer !== null || reply !== null ? (
            <section className="mllm" aria-label="MLLM reply">
              <h4>MLLM</h4>
              <p>
                Answer: <strong data-testid="answer">{record.answer ?? "–"}</strong>
              </p>
              {reply !== null ? (
                <blockquote className="reply" data-testid="reply">
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
                  <button
                    key={kind}
                    type="button"
                    className="toggle"
                    aria-pressed={shown === kind}
                    onClick={() => setShown(kind)}
                  >
                    {pictureLabel(kind)}
                  </button>
                ))}
              </div>
              {link && shown ? (
                <Picture key={link} link={link} alt={`${pictureLabel(shown)} of ${record.image_name}`} />
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
