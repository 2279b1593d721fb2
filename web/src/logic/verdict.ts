/** How a decision is shown: text and symbol carry the meaning, colour only repeats it. */

export type Tone = "anomalous" | "normal" | "undecided";

export interface DecisionView {
  tone: Tone;
  label: string;
  symbol: string;
}

export function decisionView(decision: string | null | undefined): DecisionView {
  switch (decision) {
    case "anomalous":
      return { tone: "anomalous", label: "Anomalous", symbol: "✕" };
    case "normal":
      return { tone: "normal", label: "Normal", symbol: "✓" };
    case "unrecognised":
      return { tone: "undecided", label: "Not recognised", symbol: "!" };
    default:
      return { tone: "undecided", label: "Undecided", symbol: "?" };
  }
}

/** Picture kinds in display order: box, heatmap, then attention layers by number, then anything else. */
export function orderPictures(kinds: readonly string[]): string[] {
  const rank = (kind: string): [number, number, string] => {
    if (kind === "box") return [0, 0, kind];
    if (kind === "heatmap") return [1, 0, kind];
    const m = /^attention_L(\d+)$/.exec(kind);
    if (m) return [2, Number(m[1]), kind];
    return [3, 0, kind];
  };
  return [...kinds].sort((a, b) => {
    const [ra, na, ka] = rank(a);
    const [rb, nb, kb] = rank(b);
    return ra - rb || na - nb || ka.localeCompare(kb);
  });
}

export function pictureLabel(kind: string): string {
  if (kind === "box") return "Boxed";
  if (kind === "heatmap") return "Heatmap";
  const m = /^attention_L(\d+)$/.exec(kind);
  if (m) return `Attention L${m[1]}`;
  return kind;
}

export interface Region {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  peak: number;
  /** The region's largest map value (smoothed, the map's units). */
  score?: number;
  /** The region's largest patch score, on the image score's scale; null from an exported model. */
  patch_score?: number | null;
  /** Its number on the boxed picture's tag (`#1 166.70`): the record's order, by the smoothed map's peak. */
  rank?: number;
}

/**
 * A box's strength as its tag on the boxed picture and the text output print it (two decimals, `#1 166.70`),
 * so the list and the picture show the same number.
 */
export function formatStrength(value: number | null): string {
  return value === null || !Number.isFinite(value) ? "–" : value.toFixed(2);
}

/**
 * The line above the box list, saying what the order is. The record numbers the boxes by the smoothed heat
 * map's peak (the picture's tags, the text output and the MLLM's prompt use that order), while a box's strength
 * is its single highest patch score; the two usually agree, and then "strongest first" is true. Where they do
 * not (a lone hot patch beside a broad warm region), the line says how the boxes are numbered rather than
 * claim an order the numbers shown contradict.
 */
export function regionsHeading(boxes: readonly Region[], mapFactor = 1): string {
  const count = `${boxes.length} region${boxes.length === 1 ? "" : "s"} boxed`;
  const strengths = boxes.map((b) => regionStrength(b, mapFactor) ?? Number.NEGATIVE_INFINITY);
  const ordered = strengths.every((s, i) => i === 0 || (strengths[i - 1] as number) >= s);
  if (boxes.length <= 1 || ordered) return `${count}${boxes.length > 1 ? ", strongest first" : ""}.`;
  return (
    `${count}, numbered as on the boxed picture: #1 is where the heat map, smoothed over neighbouring patches, is strongest. ` +
    "A region's strength is its single highest patch score, so the numbers need not fall in order."
  );
}

/**
 * A region's strength as a person should read it: its largest patch score, on the same scale as the
 * image's score and the threshold (the box over the highest-scoring patch carries the image's score). An
 * exported model keeps no patch grid: then the map's value times `mapFactor` (tau / map_tau, the legend's
 * scale), as its picture's tag shows.
 */
export function regionStrength(region: Region, mapFactor = 1): number | null {
  if (typeof region.patch_score === "number") return region.patch_score;
  return typeof region.score === "number" ? region.score * mapFactor : null;
}

function regionList(value: unknown): Region[] {
  if (!Array.isArray(value)) return [];
  return value.filter(
    (b): b is Region =>
      typeof b === "object" && b !== null && ["x0", "y0", "x1", "y1", "peak"].every((k) => typeof (b as Record<string, unknown>)[k] === "number"),
  );
}

/**
 * The verdict's regions: `boxes` (drawn; only an anomalous expert verdict has any) and `candidates`
 * (a normal verdict's strongest regions, not drawn unless asked for).
 */
export function regionsOf(verdict: Record<string, unknown>): { boxes: Region[]; candidates: Region[] } {
  return { boxes: regionList(verdict["boxes"]), candidates: regionList(verdict["candidates"]) };
}

/**
 * Which MLLM answered and what became of CAAS, in plain words (the record's `answered_by`).
 * Said on every MLLM answer because a hybrid service sends band inspections to the in-process CAAS
 * model and the rest to a serving engine; a CAAS the engine could not apply must read as such.
 * `null` for an expert-only inspection (nothing to say).
 */
export interface AnsweredByView {
  /** "Answered by <backend> (serving engine | in-process CAAS | in-process model)". */
  backend: string;
  how: string;
  /** The CAAS status as a sentence. */
  caas: string;
}

export function answeredByView(answeredBy: Record<string, string> | null | undefined): AnsweredByView | null {
  if (!answeredBy) return null;
  const backend = answeredBy["backend"] ?? "";
  const route = answeredBy["route"] ?? "single";
  const how =
    route === "engine"
      ? "serving engine"
      : route === "caas"
        ? "in-process CAAS"
        : backend.startsWith("openai:")
          ? "serving engine"
          : "in-process model";
  return { backend: backend || "an unnamed backend", how, caas: caasSentence(answeredBy["caas"] ?? null) };
}

function caasSentence(caas: string | null): string {
  if (caas === "applied") return "CAAS applied: the expert was unsure, so the model's attention to the image was sharpened.";
  if (caas === "not applied (backend cannot)") {
    return "CAAS not applied: the expert was unsure, but this backend cannot sharpen attention, so it answered without CAAS.";
  }
  if (caas === "not needed (outside the band)") return "CAAS not needed: the expert's score is outside the unsure band.";
  const off = caas === null ? null : /^off \(condition (.+)\)$/.exec(caas);
  if (off) return `CAAS off: the “${off[1]}” condition does not use it.`;
  return caas === null ? "CAAS status not recorded." : `CAAS: ${caas}.`;
}
