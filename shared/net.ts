/** Address helpers shared by the conductor's config checks and the agent's, and a free-port finder for the lab, benchmarks and tests. */
import net from 'node:net';

/** 127.0.0.0/8, ::1 and localhost (with or without IPv6 brackets): reachable only from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === '::1' || h === 'localhost';
}

/** A TCP port free on loopback right now (another process may still take it before it is bound). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}
