/*
 * Chain rules: how the bundles of one site link up (SPEC.md, "Chain").
 *
 * seq rises by exactly 1 per bundle and each bundle's `prev` is the sha256 of the previous bundle's
 * SHA256SUMS, so the SHA256SUMS hash is a bundle's identity. A media set may start at any seq (old
 * bundles get pruned) but must be continuous from there. The same bundle found twice (two media) is
 * one bundle; two different bundles with one seq are a fork. A missing tail or a rollback to an older
 * set is only visible against remembered state: the newest seq and hash a verifier has seen. So is a
 * set that starts past it: the bundles between the remembered seq and the set's first were withheld,
 * and accepting the set would move the state past them without anyone having checked them.
 */

export interface ChainLink {
  site: string;
  seq: number;
  prev: string | undefined;
  /** sha256 of the bundle's SHA256SUMS */
  sums: string;
  location: string;
}

export interface SiteState {
  seq: number;
  sums: string;
}

export type ChainProblemKind = 'chain-gap' | 'fork' | 'rollback' | 'withheld';

export interface ChainProblem {
  kind: ChainProblemKind;
  site: string;
  seq: number;
  message: string;
  locations: string[];
}

export interface SiteChain {
  site: string;
  first: number;
  newest: SiteState;
  /** distinct bundles, by seq, each with every location it was found at */
  bundles: { seq: number; sums: string; prev: string | undefined; locations: string[] }[];
}

/** Checks the links of every site in `links` against each other and, if given, remembered state. */
export function checkChain(links: readonly ChainLink[], state?: ReadonlyMap<string, SiteState>): { problems: ChainProblem[]; sites: SiteChain[] } {
  const problems: ChainProblem[] = [];
  const sites: SiteChain[] = [];
  const bySite = new Map<string, ChainLink[]>();
  for (const l of links) bySite.set(l.site, [...(bySite.get(l.site) ?? []), l]);

  for (const [site, siteLinks] of [...bySite].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    // one entry per distinct bundle: (seq, sums)
    const distinct = new Map<string, SiteChain['bundles'][number]>();
    for (const l of siteLinks) {
      const key = `${l.seq}:${l.sums}`;
      const b = distinct.get(key);
      if (b) b.locations.push(l.location);
      else distinct.set(key, { seq: l.seq, sums: l.sums, prev: l.prev, locations: [l.location] });
    }
    const bundles = [...distinct.values()].sort((a, b) => a.seq - b.seq || (a.sums < b.sums ? -1 : 1));
    const bySeq = new Map<number, typeof bundles>();
    for (const b of bundles) bySeq.set(b.seq, [...(bySeq.get(b.seq) ?? []), b]);

    for (const [seq, same] of bySeq) {
      if (same.length > 1) {
        problems.push({ kind: 'fork', site, seq, message: `${same.length} different bundles claim seq ${seq}`, locations: same.flatMap((b) => b.locations) });
      }
    }
    const seqs = [...bySeq.keys()];
    for (let i = 1; i < seqs.length; i++) {
      const a = seqs[i - 1] as number;
      const b = seqs[i] as number;
      if (b !== a + 1) {
        const missing = b - a === 2 ? `seq ${a + 1} is` : `seq ${a + 1} to ${b - 1} are`;
        problems.push({
          kind: 'chain-gap',
          site,
          seq: b,
          message: `${missing} missing between ${a} and ${b}`,
          locations: (bySeq.get(b) ?? []).flatMap((x) => x.locations),
        });
        continue;
      }
      const before = new Set((bySeq.get(a) ?? []).map((x) => x.sums));
      for (const x of bySeq.get(b) ?? []) {
        if (x.prev === undefined || !before.has(x.prev)) {
          problems.push({ kind: 'fork', site, seq: b, message: `prev of seq ${b} does not match the SHA256SUMS of seq ${a}`, locations: x.locations });
        }
      }
    }

    const last = bundles.at(-1) as SiteChain['bundles'][number];
    const known = state?.get(site);
    if (known) {
      const atKnown = bySeq.get(known.seq);
      if (last.seq < known.seq) {
        problems.push({
          kind: 'rollback',
          site,
          seq: last.seq,
          message: `newest bundle is seq ${last.seq} but seq ${known.seq} was seen before`,
          locations: last.locations,
        });
      }
      for (const x of atKnown ?? []) {
        if (x.sums !== known.sums) {
          problems.push({
            kind: 'fork',
            site,
            seq: known.seq,
            message: `seq ${known.seq} differs from the bundle seen before with that seq`,
            locations: x.locations,
          });
        }
      }
      const first = bundles[0]?.seq ?? last.seq;
      if (first > known.seq + 1) {
        const missing = first - known.seq === 2 ? `seq ${known.seq + 1} was` : `seq ${known.seq + 1} to ${first - 1} were`;
        problems.push({
          kind: 'withheld',
          site,
          seq: first,
          message: `${missing} never seen: seq ${known.seq} was seen before and this set starts at seq ${first}`,
          locations: (bySeq.get(first) ?? []).flatMap((x) => x.locations),
        });
      }
      if (!atKnown) {
        for (const x of bySeq.get(known.seq + 1) ?? []) {
          if (x.prev !== known.sums) {
            problems.push({
              kind: 'fork',
              site,
              seq: x.seq,
              message: `prev of seq ${x.seq} does not match seq ${known.seq} seen before`,
              locations: x.locations,
            });
          }
        }
      }
    }
    sites.push({ site, first: bundles[0]?.seq ?? last.seq, newest: { seq: last.seq, sums: last.sums }, bundles });
  }
  return { problems, sites };
}
