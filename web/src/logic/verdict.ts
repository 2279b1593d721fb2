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
