#!/usr/bin/env node
// The installed `zerohop` command. npm links a package's bin when it installs the package, before
// `prepare` builds server/dist: this file exists from the start, so the link does too, and it runs the
// built command line (server/dist/cli.js).
try {
  await import('../dist/cli.js')
} catch (err) {
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes('dist/cli.js')) throw err
  process.stderr.write('zerohop: the command is not built yet; run npm run build (npm install does it)\n')
  process.exit(2)
}
