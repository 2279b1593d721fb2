import { describe, expect, it } from "vitest";

import type { InspectionRecord } from "../src/client.js";
import { EXPORT_COLUMNS, csvField, exportRow, toCsv, toJsonLines } from "../src/export.js";

const record = {
  id: "abc",
  time: "2026-11-30T22:00:00.000+00:00",
  category: "tire",
  image_name: "lot7/cut/003.png",
  score: 182.345,
  tau: 181.8,
  s_max: 190,
  decision: "anomalous",
  in_band: true,
  answer: 'Yes, a "cut", here',
  caas_applied: true,
  label: "normal",
  label_by: "omar",
  label_time: "2026-11-30T22:05:00.000+00:00",
  label_note: "scuff, only\nwiped",
  label_history: [{ revision: 1, label: "normal", by: "omar", time: "2026-11-30T22:05:00.000+00:00", note: "scuff, only\nwiped", previous: null }],
  model_version: 7,
  verdict: { boxes: [{ x0: 1, y0: 2, x1: 30, y1: 40, peak: 3.5, rank: 1 }, { x0: "bad" }] },
  pictures: {
    box: "/v1/files/abc/003_box.png",
    heatmap: "/v1/files/abc/003_heatmap.png",
    reference: "/v1/files/abc/003_reference.jpg",
  },
  reference: { index: 4, image: "good/017.png", bank_row: 1234, unavailable: null },
  answered_by: { backend: "hf:/models/qwen", route: "caas", caas: "applied" },
} as unknown as InspectionRecord;

/** An expert-only inspection stored before references: no reference, no MLLM, no pictures. */
const expertOnly = {
  id: "def",
  time: "2026-11-30T22:01:00.000+00:00",
  category: "tire",
  image_name: "004.png",
  score: 10.5,
  tau: 181.8,
  s_max: 190,
  decision: "normal",
  in_band: false,
  answer: null,
  caas_applied: false,
  verdict: {},
  pictures: {},
} as unknown as InspectionRecord;

const HEADER =
  "id,time,category,image,score,threshold,band_end,decision,in_band,caas_applied,answer,label,label_by,label_time,label_note," +
  "model_version,boxes,picture_box,picture_heatmap," +
  "reference_image,picture_reference,answered_by_backend,answered_by_route,answered_by_caas";

describe("history export", () => {
  it("keeps the relative path, thresholds, boxes and absolute picture links", () => {
    expect(exportRow(record, "http://h:8000/")).toEqual({
      id: "abc",
      time: "2026-11-30T22:00:00.000+00:00",
      category: "tire",
      image: "lot7/cut/003.png",
      score: 182.345,
      threshold: 181.8,
      band_end: 190,
      decision: "anomalous",
      in_band: true,
      caas_applied: true,
      answer: 'Yes, a "cut", here',
      label: "normal",
      label_by: "omar",
      label_time: "2026-11-30T22:05:00.000+00:00",
      label_note: "scuff, only\nwiped",
      label_history: [{ revision: 1, label: "normal", by: "omar", time: "2026-11-30T22:05:00.000+00:00", note: "scuff, only\nwiped", previous: null }],
      model_version: 7,
      boxes: [{ x0: 1, y0: 2, x1: 30, y1: 40, peak: 3.5 }],
      pictures: {
        box: "http://h:8000/v1/files/abc/003_box.png",
        heatmap: "http://h:8000/v1/files/abc/003_heatmap.png",
        reference: "http://h:8000/v1/files/abc/003_reference.jpg",
      },
      reference_image: "good/017.png",
      answered_by: { backend: "hf:/models/qwen", route: "caas", caas: "applied" },
    });
  });

  it("leaves the reference and answered_by empty for an expert-only record stored before references", () => {
    expect(exportRow(expertOnly, "http://h")).toMatchObject({ reference_image: null, answered_by: null, pictures: {} });
    expect(toCsv([expertOnly], "http://h")).toBe(`${HEADER}\r\ndef,2026-11-30T22:01:00.000+00:00,tire,004.png,10.5,181.8,190,normal,false,false,,,,,,,,,,,,,,\r\n`);
  });

  it("writes the engine route and a CAAS the engine could not apply as they are", () => {
    const engine = {
      ...record,
      answered_by: { backend: "openai:http://127.0.0.1:8001/v1#qwen2.5-vl", route: "engine", caas: "not applied (backend cannot)" },
    } as InspectionRecord;
    const line = toCsv([engine], "http://h").split("\r\n")[1] as string;
    expect(line.endsWith(
      ",good/017.png,http://h/v1/files/abc/003_reference.jpg,openai:http://127.0.0.1:8001/v1#qwen2.5-vl,engine,not applied (backend cannot)",
    )).toBe(true);
  });

  it("writes RFC 4180 CSV, quoting commas and quotes, and defusing formulas", () => {
    expect(HEADER).toBe(EXPORT_COLUMNS.join(","));
    expect(toCsv([record], "http://h")).toBe(
      `${HEADER}\r\n` +
        'abc,2026-11-30T22:00:00.000+00:00,tire,lot7/cut/003.png,182.345,181.8,190,anomalous,true,true,"Yes, a ""cut"", here",normal,omar,2026-11-30T22:05:00.000+00:00,"scuff, only\nwiped",7,1 2 30 40,' +
        "http://h/v1/files/abc/003_box.png,http://h/v1/files/abc/003_heatmap.png," +
        "good/017.png,http://h/v1/files/abc/003_reference.jpg,hf:/models/qwen,caas,applied\r\n",
    );
    expect(csvField("=HYPERLINK(1)")).toBe("'=HYPERLINK(1)");
    expect(csvField(-1.5)).toBe("-1.5");
    // File names are kept exactly by the service, so a name can be a formula: each is defused in the CSV.
    for (const name of ["=1+2.png", "+1.png", "-1.png", "@SUM(A1).png", "=HYPERLINK(\"x\",\"y\").png"]) {
      const line = toCsv([{ ...record, image_name: name }], "http://h").split("\r\n")[1] as string;
      const field = line.split(",")[3] as string;
      expect(field.startsWith("'") || field.startsWith("\"'")).toBe(true);
    }
    expect(toCsv([{ ...record, image_name: "Zelle 7 (Charge B) ä.png" }], "http://h").split("\r\n")[1]).toContain(
      ",Zelle 7 (Charge B) ä.png,",
    );
    expect(csvField(null)).toBe("");
  });

  it("writes one JSON object per line", () => {
    const lines = toJsonLines([record, record], "http://h").trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0] as string)).toEqual(exportRow(record, "http://h"));
  });
});
