// Integration-test harness: import everything from here.
export * from './procs.mjs';
export * from './redis.mjs';
export * from './postgres.mjs';
export * from './mock.mjs';
export * from './gateway.mjs';
export * from './http.mjs';
export * from './wire.mjs';
