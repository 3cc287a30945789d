/** Detached daemons and the proxies: start, stop, status (`pulp-lazy start|stop|restart|status`). */
export * from './components.ts';
export * from './daemon.ts';
export { httpGet, probeHealth } from './health.ts';
export { logFilePath, pidFilePath, readPidState } from './pidfile.ts';
export { type ComponentStatus, componentStatus, lowDiskWarning, remotesStatus } from './status.ts';
export { describeExit, type ExitRecord, supervise } from './supervisor.ts';
