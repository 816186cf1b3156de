/*
 * The agent's clock. AIRLOCK_NOW (an ISO time) replaces the real one, so schedules, thresholds and
 * ages can be tested, and rehearsed, without waiting: `AIRLOCK_NOW=2026-03-01T12:00:00Z airlock status`.
 */
import { AirlockError } from '../manifests/errors.js';

export function now(): Date {
  const fixed = process.env.AIRLOCK_NOW;
  if (fixed === undefined || fixed === '') return new Date();
  const t = Date.parse(fixed);
  if (Number.isNaN(t))
    throw new AirlockError('usage', `AIRLOCK_NOW=${fixed} is not a time`, { hint: 'use an ISO time like 2026-03-01T12:00:00Z, or unset it' });
  return new Date(t);
}
