import { useEffect, useId, useRef, useState } from "react";
import type { UserError } from "../logic/errors";

/**
 * The state of an admin's destructive action with a confirm step (retire a category, delete an inspection).
 *
 * Why one hook: both must keep the same promises (the focus on Cancel, the safe answer, while asking; back on the
 * button that asked once the question goes; one request at a time; a refusal said under it), and two copies of
 * that state drift apart.
 */
export function useConfirmStep() {
  const [asking, setAsking] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<UserError | null>(null);
  const cancelRef = useRef<HTMLButtonElement>(null);
  const askRef = useRef<HTMLButtonElement>(null);
  const wasAsking = useRef(false);
  const questionId = useId();

  useEffect(() => {
    if (asking) cancelRef.current?.focus();
    else if (wasAsking.current) askRef.current?.focus();
    wasAsking.current = asking;
  }, [asking]);

  return { asking, setAsking, busy, setBusy, error, setError, cancelRef, askRef, questionId };
}
