/** Where the Apache installation lives: Debian's layout or the RHEL family's. */
import { existsSync } from 'node:fs';

/** Binary name, ServerRoot and modules directory. */
export interface ApachePlatform {
  bin: string;
  root: string;
  modules: string;
}

export const DEBIAN_APACHE: ApachePlatform = {
  bin: 'apache2',
  root: '/usr/lib/apache2',
  modules: '/usr/lib/apache2/modules',
};

/** RHEL family (httpd package, mod_xsendfile from EPEL). See docs/rhel.md. */
export const RHEL_APACHE: ApachePlatform = {
  bin: 'httpd',
  root: '/usr/lib64/httpd',
  modules: '/usr/lib64/httpd/modules',
};

/** The installed one: Debian's when its modules are there, else RHEL's, else Debian's. */
export function detectApachePlatform(): ApachePlatform {
  if (existsSync(DEBIAN_APACHE.modules)) return DEBIAN_APACHE;
  if (existsSync(RHEL_APACHE.modules)) return RHEL_APACHE;
  return DEBIAN_APACHE;
}
