/*
 * SQL both sides send: an export records table checks at the restore point, and a drill runs the
 * same statement on the restored cluster to compare.
 */

/**
 * A row count and an order-independent checksum (the sum of the first 64 bits of each row's md5)
 * per table, as one JSON object; the same SQL runs on a restored cluster to compare.
 */
export function tableChecksSql(tables: readonly string[]): string {
  if (tables.length === 0) return `'{}'::json`;
  const one = (t: string) =>
    `${quoteLiteral(t)}, (SELECT json_build_array(count(*), coalesce(sum(('x' || substr(md5(x::text), 1, 16))::bit(64)::bigint::numeric), 0)::text) FROM ${t} x)`;
  // json_build_object takes at most 100 arguments: one object per 50 tables, merged
  const chunks: string[] = [];
  for (let i = 0; i < tables.length; i += 50)
    chunks.push(
      `jsonb_build_object(${tables
        .slice(i, i + 50)
        .map(one)
        .join(', ')})`,
    );
  return `(${chunks.join(' || ')})::json`;
}

/** A string as an SQL literal. */
export const quoteLiteral = (s: string) => `'${s.replace(/'/g, "''")}'`;
