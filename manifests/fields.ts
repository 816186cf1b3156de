/*
 * Field-by-field checks of parsed JSON that collect every problem instead of stopping at the first,
 * shared by the manifest's schema and its coverage section.
 */

export type Problems = string[];

/**
 * `v` as an object holding every key of `keys`, any of `optional` and nothing else; each deviation
 * is pushed onto `p` as "<where>.<key>: ...". Returns undefined (after one problem) for a non-object.
 */
export function fieldsOf(
  v: unknown,
  where: string,
  p: Problems,
  keys: readonly string[],
  optional: readonly string[] = [],
): Record<string, unknown> | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    p.push(`${where}: not an object`);
    return undefined;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!keys.includes(k) && !optional.includes(k)) p.push(`${where}.${k}: unknown field`);
  for (const k of keys) if (!(k in o)) p.push(`${where}.${k}: missing`);
  return o;
}
