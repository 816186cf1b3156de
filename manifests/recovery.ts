/*
 * Recovery data beside the volumes: optional PAR2 files (Debian's `par2`) that let a reader rebuild
 * a volume with a few damaged blocks. Without them one bad age chunk loses the rest of the payload.
 *
 * They are plain files of the bundle folder, listed in SHA256SUMS like every other file (so they are
 * signed), but not in manifest.json: the payload is defined by the volumes alone, and a reader that
 * ignores recovery data loses nothing but the chance to repair. Their names never start with
 * `payload.`, so `cat payload.*` still reads exactly the volumes.
 */

/** The index file; `par2 repair` is pointed at it (or at any intact recovery volume). */
export const RECOVERY_INDEX = 'recovery.par2';

/** `recovery.par2` and `recovery.vol<first>-<count>.par2` (par2's `+` is not a bundle file name). */
export const RECOVERY_FILE_RE = /^recovery(?:\.vol\d{1,6}-\d{1,6})?\.par2$/;

export function isRecoveryFile(name: string): boolean {
  return RECOVERY_FILE_RE.test(name);
}
