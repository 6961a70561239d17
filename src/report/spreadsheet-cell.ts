/**
 * Makes a cell safe to open in Excel/LibreOffice/Sheets: text starting with = + - @ or a
 * tab/carriage return would be read as a formula (CSV injection, OWASP), so it gets a leading
 * apostrophe, which spreadsheets show as plain text. Text that starts with an apostrophe gets one
 * too, so that fromSpreadsheetCell() gives back exactly the value. Numbers stay numbers.
 */
export function spreadsheetSafe(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const text = String(value);
  return /^[=+\-@\t\r']/.test(text) ? `'${text}` : text;
}

/** The value spreadsheetSafe() was given: idsync reading back a report or an index it wrote. */
export function fromSpreadsheetCell(cell: string): string {
  return /^'[=+\-@\t\r']/.test(cell) ? cell.slice(1) : cell;
}
