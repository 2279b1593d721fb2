import { describe, expect, it } from "vitest";

import type { InspectionRecord } from "../src/client.js";
import { csvField, exportRow, toCsv, toJsonLines } from "../src/export.js";

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
  verdict: { boxes: [{ x0: 1, y0: 2, x1: 30, y1: 40, peak: 3.5, rank: 1 }, { x0: "bad" }] },
  pictures: { box: "/v1/files/abc/003_box.png", heatmap: "/v1/files/abc/003_heatmap.png" },
} as unknown as InspectionRecord;

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
      boxes: [{ x0: 1, y0: 2, x1: 30, y1: 40, peak: 3.5 }],
      pictures: { box: "http://h:8000/v1/files/abc/003_box.png", heatmap: "http://h:8000/v1/files/abc/003_heatmap.png" },
    });
  });

  it("writes RFC 4180 CSV, quoting commas and quotes, and defusing formulas", () => {
    expect(toCsv([record], "http://h")).toBe(
      "id,time,category,image,score,threshold,band_end,decision,in_band,caas_applied,answer,label,boxes,picture_box,picture_heatmap\r\n" +
        'abc,2026-11-30T22:00:00.000+00:00,tire,lot7/cut/003.png,182.345,181.8,190,anomalous,true,true,"Yes, a ""cut"", here",normal,1 2 30 40,' +
        "http://h/v1/files/abc/003_box.png,http://h/v1/files/abc/003_heatmap.png\r\n",
    );
    expect(csvField("=HYPERLINK(1)")).toBe("'=HYPERLINK(1)");
    expect(csvField(-1.5)).toBe("-1.5");
    expect(csvField(null)).toBe("");
  });

  it("writes one JSON object per line", () => {
    const lines = toJsonLines([record, record], "http://h").trimEnd().split("\n");
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0] as string)).toEqual(exportRow(record, "http://h"));
  });
});
