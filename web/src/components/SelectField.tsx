/** A labelled `<select>`: the console's one way to offer a choice, so every choice is labelled for screen readers. */

export interface SelectFieldProps {
  id: string;
  label: string;
  value: string;
  /** Values shown as they are (or `[value, text]` pairs). */
  options: ReadonlyArray<string | readonly [string, string]>;
  /** An empty-value first option ("All categories", "default (ksigma)"). */
  empty?: string;
  disabled?: boolean;
  /** A line under the field that says what the choice does, read out with it (`aria-describedby`). */
  hint?: string;
  onChange: (value: string) => void;
}

export function SelectField({ id, label, value, options, empty, disabled, hint, onChange }: SelectFieldProps) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} disabled={disabled} onChange={(e) => onChange(e.target.value)}
        aria-describedby={hint !== undefined ? `${id}-hint` : undefined}>
        {empty !== undefined ? <option value="">{empty}</option> : null}
        {options.map((option) => {
          const [optionValue, text] = typeof option === "string" ? [option, option] : option;
          return (
            <option key={optionValue} value={optionValue}>
              {text}
            </option>
          );
        })}
      </select>
      {hint !== undefined ? (
        <span id={`${id}-hint`} className="hint">
          {hint}
        </span>
      ) : null}
    </div>
  );
}
