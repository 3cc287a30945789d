import path from 'node:path';

/** The pulp-lazy script every detached process, systemd unit and piped logger runs (`node BIN_PATH …`). */
export const BIN_PATH = path.resolve(import.meta.dirname, '../../bin/pulp-lazy');
