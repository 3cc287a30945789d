/** Identity of a task process in leases: `host:pid:random`. */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

export function workerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}
