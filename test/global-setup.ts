/**
 * Provisions a real PostgreSQL server for the run (the same embedded server the lab and benchmarks
 * use: cli/embedded-pg.ts; PostgreSQL refuses root, so it creates a system user) and hands its URL
 * to tests.
 */
import type { TestProject } from 'vitest/node';
import { startEmbeddedPg } from '../cli/embedded-pg.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const pg = await startEmbeddedPg();
  project.provide('pgUrl', pg.url);
  return () => pg.stop();
}
