/**
 * What an answer asks its person to read besides (answerNotices: a label's or a teach's `notices`), as a polite
 * status region: it is on the page before the answer comes, empty, so a screen reader says the sentences when
 * they arrive, without taking the focus from the next decision. Text only; long image names wrap at 390 px.
 */
export function AnswerNotices({ notices, testId }: { notices: readonly string[]; testId: string }) {
  return (
    <div role="status" className="answer-notices" data-testid={testId}>
      {notices.length > 0 ? (
        <ul className="notice small">
          {notices.map((notice) => (
            <li key={notice}>{notice}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
