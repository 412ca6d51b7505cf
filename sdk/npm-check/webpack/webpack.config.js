// webpack 5's defaults, nothing SDK-specific: `new URL('waymark_bg.wasm', import.meta.url)` in
// the package is turned into an asset (asset/resource) and emitted next to the bundle. No
// `experiments` and no loaders: the check is that the package builds unchanged.
const path = require('node:path');

module.exports = {
  entry: './src/index.js',
  output: {
    path: path.resolve(__dirname, 'dist'),
    filename: 'main.js',
    clean: true,
  },
};
