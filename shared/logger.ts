/**
 * pino logger factory. Every logger ironfleet creates goes through here so that secret scrubbing
 * (shared/redact.ts) applies to every structured field at any depth, plus pino's own path-based
 * redaction for request headers, and URL credentials are masked in every message string.
 */
import { pino, stdSerializers, destination, type Logger, type LevelWithSilent, type DestinationStream } from 'pino';
import { scrubSecrets, scrubText, MASK } from './redact.js';

export type { Logger };

export interface LoggerOptions {
  level?: LevelWithSilent;
  name?: string;
  /** Where to write; defaults to stdout (fd 1). */
  destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'ironfleet',
      level: opts.level ?? 'info',
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["x-auth-token"]',
          'req.headers["x-ironfleet-agent-token"]',
          'headers.authorization',
          'headers["x-auth-token"]',
        ],
        censor: MASK,
      },
      formatters: {
        log: (obj) => scrubSecrets(obj),
      },
      // The message string too: a message quoting an image or BMC URL must not carry its credentials.
      hooks: {
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = scrubText(args[i] as string);
          return method.apply(this, args as Parameters<typeof method>);
        },
      },
      serializers: {
        err: (err: unknown) => scrubSecrets(stdSerializers.err(err as Error)),
      },
    },
    opts.destination ?? destination({ fd: 1, sync: false }),
  );
}
