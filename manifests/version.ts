/*
 * The release version, in one place: both executables print it (`--version`), the writer puts it in
 * every manifest's `tool`, the verifier in its report. package.json says the same (a unit test holds
 * them together); it is not read at run time, so the one-file verifier needs nothing beside it.
 */
export const VERSION = '0.1.0';
