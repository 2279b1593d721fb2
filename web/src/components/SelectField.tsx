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
  onChange: (value: string) => void;
}

export function SelectField({ id, label, value, options, empty, disabled, onChange }: SelectFieldProps) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} disabled={disabled} onChange={(e) => onChange(e.target.value)}>
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
    </div>
  );
}
