/*
 * Job runs: every run of a job (an export, a media copy) leaves one row in the catalog with its
 * outcome, so a status view can show the last success and the last failure of each job and site.
 */
import { AirlockError } from '../manifests/errors.js';
import { Catalog } from './catalog.js';

/**
 * Records the outcome of a job run in the catalog of `stateDir`: `error` undefined for success.
 * Never throws: a catalog that cannot be written is told to `warn`, the run's own outcome stands.
 */
export function recordRun(stateDir: string, job: string, site: string | undefined, error: unknown, now: Date, warn: (line: string) => void): void {
  try {
    const catalog = Catalog.open(stateDir);
    try {
      const failed = error !== undefined;
      catalog.recordJob({
        job,
        site: site ?? null,
        time: now.toISOString(),
        outcome: failed ? 'failed' : 'ok',
        code: failed ? (error instanceof AirlockError ? error.code : 'internal') : null,
        message: failed ? (error instanceof Error ? error.message : String(error)) : null,
      });
    } finally {
      catalog.close();
    }
  } catch (e) {
    warn(`warning: could not record the ${job} run in the catalog: ${(e as Error).message}`);
  }
}
