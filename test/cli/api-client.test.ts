/**
 * The API client against real sockets: a call to a server that accepted the connection and never
 * answers gives up at `timeoutMs` with a TimeoutError (a wedged conductor must not hold the CLI, the
 * lab or a test forever); a slow answer inside the limit arrives, and errors keep their shape.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient, ApiError } from '../../cli/api-client.js';

const servers: Array<{ close(): void }> = [];
const sockets: Socket[] = [];
afterAll(() => {
  for (const s of sockets) s.destroy();
  for (const s of servers) s.close();
});

function listen(server: Server | ReturnType<typeof createHttpServer>): Promise<string> {
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as { port: number }).port}`)));
}

describe('ApiClient', () => {
  it('a server that accepts and never answers: the call fails with TimeoutError at timeoutMs', async () => {
    let accepted = 0;
    const url = await listen(createServer((sock) => (accepted++, sockets.push(sock))));
    const api = new ApiClient({ url, timeoutMs: 300 });
    const t0 = Date.now();
    const err = await api.get('/v1/nodes').then(() => undefined, (e: Error) => e);
    const took = Date.now() - t0;
    expect(err?.name).toBe('TimeoutError');
    expect(accepted).toBe(1);
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(5000);
  });

  it('a slow answer inside the limit arrives; an Ironic error body still becomes an ApiError', async () => {
    const url = await listen(
      createHttpServer((req, res) => {
        setTimeout(() => {
          if (req.url === '/v1/nodes/missing') {
            res.writeHead(404, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ error_message: JSON.stringify({ faultstring: 'Node missing could not be found.', code: 'IRF_NOT_FOUND' }) }));
          } else res.end(JSON.stringify({ nodes: [] }));
        }, 100);
      }),
    );
    const api = new ApiClient({ url, timeoutMs: 2000 });
    expect(await api.get('/v1/nodes')).toEqual({ nodes: [] });
    const err = await api.get('/v1/nodes/missing').then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(404);
    expect((err as ApiError).code).toBe('IRF_NOT_FOUND');
  });
});
