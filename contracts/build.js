#!/usr/bin/env node
// Compiles contracts/src/**/*.sol with the solc pinned in package.json (npm `solc`, called
// through its JS API: the solcjs CLI prints a non-JSON line before --standard-json output)
// and writes one artifact per contract to contracts/artifacts/<Name>.json: ABI, creation and
// runtime bytecode. The Rust bindings (`alloy::sol!`) read these files.
//
//   node build.js           write the artifacts
//   node build.js --check   fail (exit 1) when the committed artifacts differ from the sources
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const root = __dirname;
const srcDir = path.join(root, 'src');
const outDir = path.join(root, 'artifacts');
const check = process.argv.includes('--check');
const EVM_VERSION = 'prague';

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? walk(p) : e.name.endsWith('.sol') ? [p] : [];
  }).sort();
}

const sources = {};
for (const file of walk(srcDir)) {
  sources[path.relative(root, file)] = { content: fs.readFileSync(file, 'utf8') };
}

function findImports(importPath) {
  for (const base of [root, path.join(root, 'node_modules')]) {
    const p = path.join(base, importPath);
    if (fs.existsSync(p)) return { contents: fs.readFileSync(p, 'utf8') };
  }
  return { error: `import not found: ${importPath} (run npm ci in contracts/)` };
}

const input = {
  language: 'Solidity',
  sources,
  settings: {
    evmVersion: EVM_VERSION,
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

const artifacts = {};
for (const [sourceName, contracts] of Object.entries(output.contracts || {})) {
  if (!sourceName.startsWith('src/')) continue;
  for (const [name, c] of Object.entries(contracts)) {
    if (!c.evm.bytecode.object) continue; // interfaces and abstract contracts
    if (artifacts[name]) throw new Error(`two contracts named ${name}: artifact names must be unique`);
    artifacts[name] = JSON.stringify({
      contractName: name,
      sourceName,
      compiler: `solc ${solc.version()}`,
      evmVersion: EVM_VERSION,
      abi: c.abi,
      bytecode: '0x' + c.evm.bytecode.object,
      deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    }, null, 2) + '\n';
  }
}

const existing = fs.existsSync(outDir) ? fs.readdirSync(outDir).filter((f) => f.endsWith('.json')) : [];
if (check) {
  const drift = [];
  for (const [name, text] of Object.entries(artifacts)) {
    const p = path.join(outDir, `${name}.json`);
    if (!fs.existsSync(p) || fs.readFileSync(p, 'utf8') !== text) drift.push(`${name}.json differs from its source`);
  }
  for (const f of existing) if (!artifacts[f.replace(/\.json$/, '')]) drift.push(`${f} has no source`);
  if (drift.length) {
    console.error(`contract artifacts are stale (run \`make contracts\`):\n  ${drift.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`contract artifacts up to date (${Object.keys(artifacts).length} contracts)`);
} else {
  fs.mkdirSync(outDir, { recursive: true });
  for (const f of existing) if (!artifacts[f.replace(/\.json$/, '')]) fs.unlinkSync(path.join(outDir, f));
  for (const [name, text] of Object.entries(artifacts)) fs.writeFileSync(path.join(outDir, `${name}.json`), text);
  console.log(`wrote ${Object.keys(artifacts).length} artifacts to ${path.relative(process.cwd(), outDir) || '.'}`);
}
