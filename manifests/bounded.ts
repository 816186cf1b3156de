/*
 * Findings in bounded memory. A bundle signed by a trusted key can still hold 80,000 entries with long
 * unique names, each of them a finding or three; kept and printed one by one, they cost gigabytes and
 * end in an internal error with no verdict. So a collector names the first LIMITS.findingsNamed of
 * each result and only counts the rest, and the caller adds one summary per result that had more,
 * carrying the count (`more`) so that totals stay exact. Quoted names are clipped to what a tar path
 * may hold.
 */
import { LIMITS } from './limits.js';

/** `s`, cut to LIMITS.tarPathBytes characters with a note of its length when it is longer. */
export function clip(s: string): string {
  return s.length <= LIMITS.tarPathBytes ? s : `${s.slice(0, LIMITS.tarPathBytes)}... (${s.length} characters)`;
}

/** Collects items into `out`, at most `named` per result; the rest are counted for summaries. */
export class BoundedFindings<T extends { result: string }> {
  private readonly perResult = new Map<string, number>();
  private readonly unnamed = new Map<string, number>();

  constructor(
    readonly out: T[],
    private readonly named: number = LIMITS.findingsNamed,
  ) {}

  add(item: T): void {
    const n = this.perResult.get(item.result) ?? 0;
    this.perResult.set(item.result, n + 1);
    if (n < this.named) this.out.push(item);
    else this.unnamed.set(item.result, (this.unnamed.get(item.result) ?? 0) + 1);
  }

  /**
   * Adds `count` items of `result` of which only `names` are known (the first few): those are made
   * by `make` and named while there is room, the rest counted.
   */
  addUnnamed(result: T['result'], count: number, make: (name: string) => T, names: readonly string[]): void {
    for (const n of names) this.add(make(n));
    const rest = count - names.length;
    if (rest <= 0) return;
    this.perResult.set(result, (this.perResult.get(result) ?? 0) + rest);
    this.unnamed.set(result, (this.unnamed.get(result) ?? 0) + rest);
  }

  /** How many items were added, named or not. */
  total(): number {
    let n = 0;
    for (const c of this.perResult.values()) n += c;
    return n;
  }

  /** Appends one summary per result that had unnamed items, made by `summary`, and clears the counts. */
  finish(summary: (result: T['result'], more: number) => T): T[] {
    for (const [result, more] of this.unnamed) this.out.push(summary(result, more));
    this.unnamed.clear();
    return this.out;
  }
}

/** The summary line of `more` findings of `result` that were not named one by one. */
export function moreMessage(result: string, more: number): string {
  return `and ${more.toLocaleString('en-US')} more ${result} finding(s) like those above, counted, not named (the first ${LIMITS.findingsNamed} of each result are)`;
}
