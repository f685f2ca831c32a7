"""What the pages share: the cached store handle and widgets that keep their values (common), charts, the
technique views (heatmap, votes, trees) and the Compare page's sweep and ablation tabs."""
