import type { InspectionRecord } from "@eagle-iad/client";
import { useState } from "react";
import { useApi } from "../api";
import { allows } from "../logic/access";
import { ConfirmAction } from "./ConfirmAction";

/** What the page says once an inspection is deleted: which one, and what went with it. */
export function deletedLine(imageName: string, files: number, bytes: number): string {
  const size = bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB` : `${Math.ceil(bytes / 1024)} KiB`;
  const pictures = files === 0 ? "no files were left" : `${files} file${files === 1 ? "" : "s"} (${size}) removed`;
  return `Deleted the inspection of ${imageName}: its pictures and uploaded image (${pictures}), then its record and label. The audit log keeps who deleted it and why.`;
}

/**
 * "Delete inspection" for an admin (nothing for other roles), with a confirm step (ConfirmAction): the question and
 * an optional reason kept in the audit log. The page is told the line to show once the inspection is gone.
 */
export function DeleteInspection({ record, onDeleted }: { record: InspectionRecord; onDeleted: (line: string) => void }) {
  const { client, me } = useApi();
  const [why, setWhy] = useState("");
  if (me !== null && !allows(me, "admin")) return null;
  return (
    <ConfirmAction
      title="Delete"
      ask="Delete inspection"
      question={
        <>
          Delete the inspection of {record.image_name}? Its uploaded image and pictures are removed from the service's disk, then its record
          and label; this cannot be undone.
        </>
      }
      fields={(busy) => (
        <label className="small">
          Why (kept in the audit log){" "}
          <input type="text" value={why} maxLength={300} onChange={(event) => setWhy(event.target.value)} disabled={busy} />
        </label>
      )}
      yes="Yes, delete it"
      doing="Deleting…"
      act={async () => {
        const deleted = await client.deleteInspection(record.id, why.trim() || undefined);
        onDeleted(deletedLine(deleted.image_name, deleted.files_removed, deleted.bytes_removed));
      }}
    />
  );
}
