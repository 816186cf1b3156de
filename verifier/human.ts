/*
 * Byte counts for people, in reports, progress lines and errors. Its own module so that the commands
 * PostgreSQL runs once per WAL file can print without loading the verifier.
 */

/** A byte count for people: 1.5 MiB. */
export function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
